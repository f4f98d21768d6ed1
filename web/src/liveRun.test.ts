import { describe, expect, it } from "vitest";
import { emptyRun, reduceLive, type StreamEvent } from "./liveRun";

const fold = (events: StreamEvent[]) => events.reduce(reduceLive, emptyRun);
const run = "demo-1-20250919T0416Z";

describe("reduceLive", () => {
  it("lights nodes up, collects streamed text and ends with the decision", () => {
    const state = fold([
      { type: "run_started", run_id: run, seq: 1, trigger: "bar", bar_ts: "2025-09-19T04:16:00Z" },
      { type: "node_started", node: "ml_signal", run_id: run, seq: 2 },
      { type: "node_finished", node: "ml_signal", run_id: run, seq: 3 },
      { type: "llm_start", node: "ollama_check", reviewer: "ollama:qwen", run_id: run, seq: 4 },
      { type: "llm_token", node: "ollama_check", text: '{"verdict": ', run_id: run, seq: 5 },
      { type: "llm_token", node: "ollama_check", text: '"buy"}', run_id: run, seq: 6 },
      { type: "decision", node: "trade", action: "buy", market: "KRW-SOL", reason: "agreed", run_id: run, seq: 7 },
      { type: "run_finished", action: "buy", market: "KRW-SOL", reason: "agreed", duration_ms: 12.5, run_id: run, seq: 8 },
    ]);
    expect(state.nodes).toEqual({ ml_signal: "done", ollama_check: "running" });
    expect(state.tokens.ollama_check).toBe('{"verdict": "buy"}');
    expect(state.reviewers.ollama_check).toBe("ollama:qwen");
    expect(state.decision).toEqual({ action: "buy", market: "KRW-SOL", reason: "agreed" });
    expect(state.finished).toBe(true);
    expect(state.durationMs).toBe(12.5);
    expect(state.lastSeq).toBe(8);
  });

  it("marks skipped nodes and never turns them back to running", () => {
    const state = fold([
      { type: "run_started", run_id: run, seq: 1 },
      { type: "node_skipped", node: "hold", skipped_node: "groq_check", because: "no_signal", run_id: run, seq: 2 },
      { type: "llm_start", node: "groq_check", run_id: run, seq: 3 },
    ]);
    expect(state.nodes.groq_check).toBe("skipped");
    expect(state.skippedBecause.groq_check).toBe("no_signal");
  });

  it("starts over on the next run and adopts a run joined mid-way", () => {
    const first = fold([
      { type: "run_started", run_id: run, seq: 1 },
      { type: "node_finished", node: "ml_signal", run_id: run, seq: 2 },
    ]);
    const joined = reduceLive(first, { type: "node_finished", node: "hold", run_id: "other", seq: 3 });
    expect(joined.runId).toBe("other");
    expect(joined.nodes).toEqual({ hold: "done" });
  });

  it("keeps replay forks out of the live run and flags a gap", () => {
    const state = fold([
      { type: "run_started", run_id: run, seq: 1 },
      { type: "replay_started", run_id: "fork-1", seq: 2 },
      { type: "node_finished", node: "groq_check", run_id: "fork-1", seq: 3 },
      { type: "gap", after_seq: 3, first_seq: 10 },
    ]);
    expect(state.runId).toBe(run);
    expect(state.nodes).toEqual({});
    expect(state.gap).toBe(true);
    expect(state.lastSeq).toBe(3);
  });
});

describe("previousLlm", () => {
  it("keeps the last run's LLM text when a run without LLM work starts", () => {
    const state = fold([
      { type: "run_started", run_id: "a", seq: 1 },
      { type: "llm_token", node: "ollama_check", text: "ok", run_id: "a", seq: 2 },
      { type: "run_started", run_id: "b", seq: 3 },
      { type: "run_started", run_id: "c", seq: 4 },
    ]);
    expect(state.runId).toBe("c");
    expect(state.tokens).toEqual({});
    expect(state.previousLlm).toEqual({ runId: "a", tokens: { ollama_check: "ok" }, reviewers: {} });
  });
});

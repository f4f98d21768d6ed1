// Fold the SSE events of one graph run into what the live page shows.

export type NodeStatus = "idle" | "running" | "done" | "skipped";

export interface StreamEvent {
  type: string;
  seq?: number | null;
  run_id?: string | null;
  node?: string | null;
  [key: string]: unknown;
}

export interface VerdictEvent {
  node: string;
  verdict: string;
  agrees: boolean;
  reviewer: string | null;
  reasoning: string;
  error: string | null;
  prompt_ref: string | null;
}

export interface LiveRun {
  runId: string | null;
  trigger: string | null;
  barTs: string | null;
  nodes: Record<string, NodeStatus>;
  skippedBecause: Record<string, string>;
  tokens: Record<string, string>;
  reviewers: Record<string, string>;
  verdicts: VerdictEvent[];
  sizing: StreamEvent | null;
  order: StreamEvent | null;
  fills: StreamEvent[];
  decision: { action: string; market: string | null; reason: string } | null;
  finished: boolean;
  durationMs: number | null;
  forks: string[]; // fork run ids (replays): their events never touch the live run
  previousLlm: { runId: string; tokens: Record<string, string>; reviewers: Record<string, string> } | null;
  gap: boolean;
  lastSeq: number | null;
}

export const emptyRun: LiveRun = {
  runId: null,
  trigger: null,
  barTs: null,
  nodes: {},
  skippedBecause: {},
  tokens: {},
  reviewers: {},
  verdicts: [],
  sizing: null,
  order: null,
  fills: [],
  decision: null,
  finished: false,
  durationMs: null,
  forks: [],
  previousLlm: null,
  gap: false,
  lastSeq: null,
};

const str = (value: unknown): string | null => (typeof value === "string" ? value : null);

function started(state: LiveRun, event: StreamEvent): LiveRun {
  // Keep the last run's LLM text in view while runs without an LLM check stream by.
  const hadText = state.runId !== null && Object.keys(state.tokens).length > 0;
  return {
    ...emptyRun,
    previousLlm: hadText
      ? { runId: state.runId as string, tokens: state.tokens, reviewers: state.reviewers }
      : state.previousLlm,
    forks: state.forks,
    lastSeq: state.lastSeq,
    runId: str(event.run_id),
    trigger: str(event.trigger),
    barTs: str(event.bar_ts),
  };
}

function mark(state: LiveRun, node: string | null, status: NodeStatus): LiveRun {
  if (!node) return state;
  // A node that finished or was skipped stays so; "running" never undoes it.
  const current = state.nodes[node];
  if (status === "running" && (current === "done" || current === "skipped")) return state;
  return { ...state, nodes: { ...state.nodes, [node]: status } };
}

/** Apply one stream event; events of other runs (and of replay forks) leave the run alone. */
export function reduceLive(state: LiveRun, event: StreamEvent): LiveRun {
  const seq = typeof event.seq === "number" ? event.seq : state.lastSeq;
  const next = { ...state, lastSeq: seq };
  if (event.type === "gap" || event.type === "overflow") return { ...next, gap: true };
  if (event.type === "replay_started" && event.run_id) {
    return { ...next, forks: [...next.forks.slice(-20), event.run_id] };
  }
  const runId = str(event.run_id);
  if (!runId || next.forks.includes(runId) || event.type.startsWith("replay_")) return next;
  if (event.type === "run_started") return started(next, event);
  // A client that connects mid-run adopts the run from its first event.
  const current = runId === next.runId ? next : started(next, event);
  const node = str(event.node);
  switch (event.type) {
    case "node_started":
    case "llm_start": {
      const reviewer = str(event.reviewer);
      const withReviewer =
        node && reviewer ? { ...current, reviewers: { ...current.reviewers, [node]: reviewer } } : current;
      return mark(withReviewer, node, "running");
    }
    case "llm_token":
      if (!node) return current;
      return mark(
        { ...current, tokens: { ...current.tokens, [node]: (current.tokens[node] ?? "") + (str(event.text) ?? "") } },
        node,
        "running",
      );
    case "node_finished":
      return mark(current, node, "done");
    case "node_skipped": {
      const skipped = str(event.skipped_node);
      if (!skipped) return current;
      const because = str(event.because) ?? "";
      return mark({ ...current, skippedBecause: { ...current.skippedBecause, [skipped]: because } }, skipped, "skipped");
    }
    case "verdict":
      return {
        ...current,
        verdicts: [
          ...current.verdicts,
          {
            node: node ?? "?",
            verdict: str(event.verdict) ?? "hold",
            agrees: event.agrees === true,
            reviewer: str(event.reviewer),
            reasoning: str(event.reasoning) ?? "",
            error: str(event.error),
            prompt_ref: str(event.prompt_ref),
          },
        ],
      };
    case "sizing":
      return { ...current, sizing: event };
    case "order_sending":
    case "order":
      return { ...current, order: { ...(current.order ?? {}), ...event } };
    case "fill":
      return { ...current, fills: [...current.fills, event] };
    case "decision":
    case "run_finished": {
      const decision = {
        action: str(event.action) ?? "hold",
        market: str(event.market),
        reason: str(event.reason) ?? "",
      };
      const finished = event.type === "run_finished";
      const duration = typeof event.duration_ms === "number" ? event.duration_ms : current.durationMs;
      return { ...current, decision, finished: current.finished || finished, durationMs: duration };
    }
    default:
      return current;
  }
}

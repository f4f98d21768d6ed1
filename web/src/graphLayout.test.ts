import { describe, expect, it } from "vitest";
import type { GraphOut } from "./api";
import { columns, layoutGraph } from "./graphLayout";

// The shape GET /api/graph returns for the decision graph.
const graph: GraphOut = {
  mermaid: "",
  nodes: ["ml_signal", "groq_check", "ollama_check", "sizing", "trade", "hold"],
  edges: [
    { source: "__start__", target: "ml_signal", conditional: false },
    { source: "groq_check", target: "hold", conditional: true },
    { source: "groq_check", target: "ollama_check", conditional: true },
    { source: "ml_signal", target: "groq_check", conditional: true },
    { source: "ml_signal", target: "hold", conditional: true },
    { source: "ollama_check", target: "hold", conditional: true },
    { source: "ollama_check", target: "sizing", conditional: true },
    { source: "sizing", target: "hold", conditional: true },
    { source: "sizing", target: "trade", conditional: true },
    { source: "hold", target: "__end__", conditional: false },
    { source: "trade", target: "__end__", conditional: false },
  ],
};

describe("layoutGraph", () => {
  it("puts each node in the column of its longest path from start", () => {
    const column = columns(graph);
    expect(column.get("ml_signal")).toBe(1);
    expect(column.get("sizing")).toBe(4);
    expect(column.get("trade")).toBe(5);
    expect(column.get("hold")).toBe(5);
    expect(column.get("__end__")).toBe(6);
  });

  it("keeps the main chain on one row and the fallback below it", () => {
    const layout = layoutGraph(graph);
    const at = (name: string) => layout.nodes.find((node) => node.name === name)!;
    expect(at("trade").y).toBe(at("ml_signal").y);
    expect(at("hold").y).toBeGreaterThan(at("trade").y);
    expect(at("hold").x).toBeLessThan(at("trade").x);
    expect(layout.edges).toHaveLength(graph.edges.length);
    expect(layout.edges.every((edge) => edge.path.startsWith("M"))).toBe(true);
  });

  it("stops on a cycle instead of looping", () => {
    const cyclic: GraphOut = {
      mermaid: "",
      nodes: ["a", "b"],
      edges: [
        { source: "__start__", target: "a", conditional: false },
        { source: "a", target: "b", conditional: false },
        { source: "b", target: "a", conditional: true },
      ],
    };
    const layout = layoutGraph(cyclic);
    expect(layout.nodes.map((node) => node.name)).toEqual(["__start__", "a", "b", "__end__"]);
  });
});

// Lay out the compiled graph (GET /api/graph) in columns by longest path from __start__.
import type { GraphEdge, GraphOut } from "./api";

export const START = "__start__";
export const END = "__end__";

export interface PlacedNode {
  name: string;
  x: number; // centre
  y: number; // centre
  width: number;
  height: number;
  terminal: boolean;
}

export interface PlacedEdge extends GraphEdge {
  path: string;
}

export interface Layout {
  width: number;
  height: number;
  nodes: PlacedNode[];
  edges: PlacedEdge[];
}

const COLUMN = 150;
const ROW = 96;
const BOX_W = 118;
const BOX_H = 40;
const TERMINAL = 14;
const MARGIN = 24;

/** Column of each node: the longest edge path from __start__ (cycles are cut). */
export function columns(graph: GraphOut): Map<string, number> {
  const names = [START, ...graph.nodes, END];
  const column = new Map<string, number>(names.map((name) => [name, 0]));
  // Bellman-Ford style relaxation, bounded by the node count so a cycle cannot loop forever.
  for (let round = 0; round < names.length; round += 1) {
    let changed = false;
    for (const edge of graph.edges) {
      const next = (column.get(edge.source) ?? 0) + 1;
      if (column.has(edge.target) && next > (column.get(edge.target) ?? 0) && next < names.length) {
        column.set(edge.target, next);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return column;
}

/** Place nodes and route edges; a node several earlier columns fall back to sits below. */
export function layoutGraph(graph: GraphOut): Layout {
  const column = columns(graph);
  const incoming = new Map<string, GraphEdge[]>();
  for (const edge of graph.edges) {
    incoming.set(edge.target, [...(incoming.get(edge.target) ?? []), edge]);
  }
  const names = [START, ...graph.nodes, END].filter((name) => column.has(name));
  const byColumn = new Map<number, string[]>();
  for (const name of names) {
    const key = column.get(name) ?? 0;
    byColumn.set(key, [...(byColumn.get(key) ?? []), name]);
  }
  const row = new Map<string, number>();
  for (const members of byColumn.values()) {
    // Fewer incoming edges first: the main chain stays on top, fallbacks go below.
    members
      .sort((a, b) => (incoming.get(a)?.length ?? 0) - (incoming.get(b)?.length ?? 0))
      .forEach((name, index) => row.set(name, index));
  }
  const xOf = new Map<string, number>();
  for (const name of names) xOf.set(name, MARGIN + BOX_W / 2 + (column.get(name) ?? 0) * COLUMN);
  // A lower-row node fed from several columns sits under the middle of its sources.
  for (const name of names) {
    const sources = (incoming.get(name) ?? []).map((edge) => edge.source);
    if ((row.get(name) ?? 0) > 0 && sources.length > 1) {
      const xs = sources.map((source) => xOf.get(source) ?? 0);
      xOf.set(name, (Math.min(...xs) + Math.max(...xs)) / 2);
    }
  }
  const nodes: PlacedNode[] = names.map((name) => {
    const terminal = name === START || name === END;
    return {
      name,
      x: xOf.get(name) ?? 0,
      y: MARGIN + BOX_H / 2 + (row.get(name) ?? 0) * ROW,
      width: terminal ? TERMINAL * 2 : BOX_W,
      height: terminal ? TERMINAL * 2 : BOX_H,
      terminal,
    };
  });
  const placed = new Map(nodes.map((node) => [node.name, node]));
  const edges: PlacedEdge[] = graph.edges
    .filter((edge) => placed.has(edge.source) && placed.has(edge.target))
    .map((edge) => ({ ...edge, path: route(placed.get(edge.source)!, placed.get(edge.target)!) }));
  const width = Math.max(...nodes.map((node) => node.x + node.width / 2)) + MARGIN;
  const height = Math.max(...nodes.map((node) => node.y + node.height / 2)) + MARGIN;
  return { width, height, nodes, edges };
}

function route(source: PlacedNode, target: PlacedNode): string {
  if (Math.abs(source.y - target.y) < 1) {
    const x1 = source.x + source.width / 2;
    const x2 = target.x - target.width / 2;
    return `M${x1},${source.y} L${x2},${target.y}`;
  }
  const down = target.y > source.y;
  const x1 = source.x;
  const y1 = source.y + (down ? source.height / 2 : -source.height / 2);
  const x2 = target.x + (down ? 0 : -target.width / 2);
  const y2 = down ? target.y - target.height / 2 : target.y;
  if (down) {
    const bend = (y2 - y1) / 2;
    return `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`;
  }
  // Up and to the right (a fallback node to __end__): leave sideways, arrive from below.
  const sx = source.x + source.width / 2;
  return `M${sx},${source.y} C${target.x},${source.y} ${target.x},${source.y} ${target.x},${
    target.y + target.height / 2
  }`;
}

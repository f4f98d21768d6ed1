import { useMemo } from "react";
import type { GraphOut } from "../api";
import { layoutGraph } from "../graphLayout";
import type { NodeStatus } from "../liveRun";
import { useLang } from "../i18n";

interface Props {
  graph: GraphOut;
  status: Record<string, NodeStatus>;
  reasons?: Record<string, string>;
}

/** The compiled graph as SVG: nodes coloured by this run's progress. */
export function GraphView({ graph, status, reasons = {} }: Props) {
  const { t } = useLang();
  const layout = useMemo(() => layoutGraph(graph), [graph]);
  const taken = (source: string, target: string) => {
    const done = (name: string) =>
      status[name] === "done" || ((name === "__start__" || name === "__end__") && Object.keys(status).length > 0);
    if (target === "__end__") return status[source] === "done";
    if (source === "__start__") return status[target] === "done" || status[target] === "running";
    return done(source) && (status[target] === "done" || status[target] === "running");
  };
  return (
    <svg
      className="graph"
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      width="100%"
      style={{ maxWidth: layout.width }}
      role="img"
      aria-label={t("graph")}
    >
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" className="arrowhead" />
        </marker>
        <marker id="arrow-on" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" className="arrowhead on" />
        </marker>
      </defs>
      {layout.edges.map((edge) => {
        const on = taken(edge.source, edge.target);
        return (
          <path
            key={`${edge.source}-${edge.target}`}
            d={edge.path}
            className={`edge${edge.conditional ? " conditional" : ""}${on ? " on" : ""}`}
            markerEnd={on ? "url(#arrow-on)" : "url(#arrow)"}
          />
        );
      })}
      {layout.nodes.map((node) => {
        const state = status[node.name] ?? "idle";
        if (node.terminal) {
          return (
            <g key={node.name} className="terminal" data-node={node.name}>
              <circle cx={node.x} cy={node.y} r={node.width / 2} />
              <text x={node.x} y={node.y - node.height / 2 - 6} textAnchor="middle">
                {node.name === "__start__" ? "start" : "end"}
              </text>
            </g>
          );
        }
        const title = state === "skipped" && reasons[node.name] ? `${t("skipped")}: ${reasons[node.name]}` : state;
        return (
          <g key={node.name} className={`node ${state}`} data-node={node.name} data-status={state}>
            <title>{title}</title>
            <rect
              x={node.x - node.width / 2}
              y={node.y - node.height / 2}
              width={node.width}
              height={node.height}
              rx={8}
            />
            <text x={node.x} y={node.y + 5} textAnchor="middle">
              {node.name}
            </text>
            {state === "skipped" && (
              <text className="badge" x={node.x} y={node.y + node.height / 2 + 14} textAnchor="middle">
                {t("skipped")}
              </text>
            )}
          </g>
        );
      })}
    </svg>
  );
}

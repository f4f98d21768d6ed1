import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useReducer,
  useRef,
  useState,
  type ReactNode,
} from "react";
import { emptyRun, reduceLive, type LiveRun, type StreamEvent } from "./liveRun";

// Every `event:` name the API sends (api/schemas.py STREAM_EVENT_TYPES, plus node_skipped,
// proposal and clamp, which the nodes emit).
export const EVENT_TYPES = [
  "run_started",
  "node_started",
  "node_finished",
  "node_skipped",
  "ml_signal",
  "proposal",
  "llm_start",
  "llm_token",
  "verdict",
  "sizing",
  "clamp",
  "order_sending",
  "order",
  "decision",
  "run_finished",
  "fill",
  "position_closed",
  "watchdog_trigger",
  "emergency_sell_failed",
  "protection",
  "trading_state",
  "monthly_cap_resumed",
  "model_status",
  "exchange_recovered",
  "replay_started",
  "replay_finished",
  "prompt_saved",
  "news",
  "gap",
  "overflow",
  "message",
];

type Listener = (event: StreamEvent) => void;

interface StreamContext {
  connected: boolean;
  live: LiveRun;
  recent: StreamEvent[];
  subscribe: (listener: Listener) => () => void;
}

const Context = createContext<StreamContext>({
  connected: false,
  live: emptyRun,
  recent: [],
  subscribe: () => () => undefined,
});

const RECENT = 60;

/** One EventSource for the page; the browser reconnects by itself and sends Last-Event-ID. */
export function StreamProvider({ children }: { children: ReactNode }) {
  const [connected, setConnected] = useState(false);
  const [live, dispatch] = useReducer(reduceLive, emptyRun);
  const [recent, setRecent] = useState<StreamEvent[]>([]);
  const listeners = useRef(new Set<Listener>());

  useEffect(() => {
    const source = new EventSource("/api/stream");
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
    const handle = (message: MessageEvent<string>) => {
      let event: StreamEvent;
      try {
        event = JSON.parse(message.data) as StreamEvent;
      } catch {
        return;
      }
      if (!event.type) event.type = message.type;
      dispatch(event);
      if (event.type !== "llm_token") setRecent((items) => [event, ...items].slice(0, RECENT));
      listeners.current.forEach((listener) => listener(event));
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, handle as EventListener);
    return () => source.close();
  }, []);

  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  return <Context.Provider value={{ connected, live, recent, subscribe }}>{children}</Context.Provider>;
}

export function useStream(): StreamContext {
  return useContext(Context);
}

/** Call `listener` for every stream event while the component is mounted. */
export function useStreamEvents(listener: Listener): void {
  const { subscribe } = useStream();
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => subscribe((event) => latest.current(event)), [subscribe]);
}

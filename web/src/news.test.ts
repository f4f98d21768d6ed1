import { describe, expect, it } from "vitest";
import type { NewsItem } from "./api";
import { coinScores, itemFromEvent, mergeNews, noticeLabel, scoreClass, shownNews, signedScore } from "./news";

const item = (link: string, minute: number, market = "KRW-BTC", score = -0.5): NewsItem => ({
  source: "coindesk",
  kind: "news",
  notice_kind: null,
  title: `item ${link}`,
  link,
  published_at: null,
  first_seen_at: new Date(Date.UTC(2026, 2, 1, 0, minute)).toISOString(),
  coins: [market],
  scores: [{ market, scorer: "lexicon", score, relevance: 1, reason: "lexicon: hack" }],
});

describe("news items", () => {
  it("colour a score by its sign and show it signed", () => {
    expect([scoreClass(0.4), scoreClass(-0.1), scoreClass(0), scoreClass(null)]).toEqual(["ok", "bad", "", ""]);
    expect([signedScore(0.456), signedScore(-0.7), signedScore(0), signedScore(undefined)]).toEqual(["+0.46", "-0.70", "0.00", "-"]);
  });

  it("badge the notice kinds, any other notice as a notice", () => {
    expect(noticeLabel("warning")).toBe("notice_warning");
    expect(noticeLabel("delisting")).toBe("notice_delisting");
    expect(noticeLabel("suspension")).toBe("notice_suspension");
    expect(noticeLabel("other")).toBe("notice_other");
    expect(noticeLabel(null)).toBeNull();
  });

  it("keep one score per coin, the first scorer's", () => {
    const scored = {
      scores: [
        { market: "KRW-BTC", scorer: "groq:llama", score: -0.9, relevance: 1, reason: "a hack" },
        { market: "KRW-BTC", scorer: "lexicon", score: -0.2, relevance: 1, reason: "lexicon: hack" },
        { market: "KRW-ETH", scorer: "lexicon", score: 0.1, relevance: 0.5, reason: "lexicon: rally" },
      ],
    };
    expect(coinScores(scored).map((s) => [s.market, s.scorer])).toEqual([["KRW-BTC", "groq:llama"], ["KRW-ETH", "lexicon"]]);
  });

  it("put live items before the fetched ones, once each, for the chosen market", () => {
    const fetched = [item("b", 5), item("a", 1), item("e", 3, "KRW-ETH")];
    const live = [item("c", 9), item("b", 5)];
    expect(mergeNews(live, fetched, null, 10).map((i) => i.link)).toEqual(["c", "b", "e", "a"]);
    expect(mergeNews(live, fetched, "KRW-BTC", 10).map((i) => i.link)).toEqual(["c", "b", "a"]);
    expect(mergeNews(live, fetched, null, 2).map((i) => i.link)).toEqual(["c", "b"]);
  });

  it("read a live news event, and refuse one without a title or link", () => {
    const event = { type: "news", source: "upbit-notice", kind: "notice", notice_kind: "warning", title: "t", link: "l", first_seen_at: "2026-03-01T00:00:00+00:00", coins: ["KRW-XRP"], scores: [] };
    expect(itemFromEvent(event)).toMatchObject({ notice_kind: "warning", title: "t", coins: ["KRW-XRP"] });
    expect(itemFromEvent({ type: "news", link: "l" })).toBeNull();
  });

  it("list what a decision's reviewers were shown, market by market", () => {
    const input = { closes: {}, news: { "KRW-BTC": [{ title: "hack", score: -0.7 }], "KRW-ETH": [] } };
    expect(shownNews(input)).toEqual([["KRW-BTC", [{ title: "hack", score: -0.7 }]]]);
    expect(shownNews({ closes: {} })).toEqual([]);
    expect(shownNews(null)).toEqual([]);
  });
});

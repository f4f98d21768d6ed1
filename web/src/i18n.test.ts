import { describe, expect, it } from "vitest";
import { kst, labelsFor } from "./i18n";

// Words that stay as they are in Korean: names, units, commands and flags.
const KEPT = new Set([
  "AutoTrader", "LXA", "API", "LLM", "Groq", "Ollama", "ID", "KST", "ms", "CSV", "ML",
  "lxa", "reconcile", "adopt", "allow", "unproven", "model", "English", "serve",
]);

describe("the Korean labels", () => {
  const en = labelsFor("en");
  const ko = labelsFor("ko");

  it("translate every label: none is empty, none is left in English", () => {
    const untranslated: string[] = [];
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      const text = ko[key];
      if (!text || !text.trim()) {
        untranslated.push(`${key}: empty`);
        continue;
      }
      // Placeholders ({node}) and setting names (LXA_...) are filled in or typed as they are.
      const plain = text.replace(/\{\w+\}/g, "").replace(/\bLXA_[A-Z_]+/g, "");
      const words = (plain.match(/[A-Za-z][A-Za-z&']+/g) ?? []).filter((word) => !KEPT.has(word));
      if (words.length > 0) untranslated.push(`${key}: ${text}`);
    }
    expect(untranslated).toEqual([]);
  });

  it("cover the same keys as the English ones", () => {
    expect(Object.keys(ko).sort()).toEqual(Object.keys(en).sort());
  });
});

describe("kst", () => {
  it("shows a UTC time as YYYY-MM-DD HH:mm in Korea's time, in both languages", () => {
    expect(kst("2025-09-19T15:04:00Z", "ko")).toBe("2025-09-20 00:04");
    expect(kst("2025-09-19T15:04:09Z", "en")).toBe("2025-09-20 00:04");
    expect(kst("2025-09-19T15:04:09Z", "en", true)).toBe("2025-09-20 00:04:09");
    expect(kst(null, "ko")).toBe("-");
  });
});

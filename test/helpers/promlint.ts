/**
 * The checks of `promtool check metrics` (Prometheus's promlint), for a
 * scraped /metrics text: promtool is a Go binary, not on this machine.
 * Rules as in prometheus/client_golang testutil/promlint/validations
 * (Apache-2.0): help text, base units, `_total` only and always on
 * counters, histogram/summary reserved names and labels, no type in the
 * name, no colons, no camelCase, no abbreviated units.
 */
import type { Metrics } from "./ops.js";

const UNITS: Record<string, string> = {
  amperes: "amperes", bytes: "bytes", celsius: "celsius", grams: "grams", joules: "joules", kelvin: "kelvin", meters: "meters", metres: "metres",
  seconds: "seconds", volts: "volts", minutes: "seconds", hours: "seconds", days: "seconds", weeks: "seconds", kelvins: "kelvin",
  fahrenheit: "celsius", rankine: "celsius", inches: "meters", yards: "meters", miles: "meters", bits: "bytes", calories: "joules",
  pounds: "grams", ounces: "grams",
};
const PREFIXES = ["pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi"];
const ABBREVIATIONS = ["s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"];
const TYPES = ["counter", "gauge", "histogram", "summary"];
const camel = /[a-z][A-Z]/;

const hasPart = (name: string, part: string) => name.includes(`_${part}_`) || name.endsWith(`_${part}`);

function unitOf(name: string): [string, string] | undefined {
  for (const word of name.split("_")) {
    if (UNITS[word]) return [word, UNITS[word]];
    for (const p of PREFIXES) if (word.startsWith(p) && UNITS[word.slice(p.length)]) return [word, UNITS[word.slice(p.length)]!];
  }
  return undefined;
}

/** Every problem promtool would print, as "family: problem". */
export function promlint(metrics: Metrics): string[] {
  const problems: string[] = [];
  for (const [family, type] of metrics.types) {
    const say = (problem: string) => problems.push(`${family}: ${problem}`);
    const lower = family.toLowerCase();
    if (!metrics.help.get(family)) say("no help text");
    const unit = unitOf(family);
    if (unit && unit[0] !== unit[1]) say(`use base unit "${unit[1]}" instead of "${unit[0]}"`);
    if (type === "counter" && !family.endsWith("_total")) say('counter metrics should have "_total" suffix');
    if (type !== "untyped" && type !== "counter" && family.endsWith("_total")) say('non-counter metrics should not have "_total" suffix');
    if (type !== "untyped") {
      if (type !== "histogram" && family.endsWith("_bucket")) say('non-histogram metrics should not have "_bucket" suffix');
      if (type !== "histogram" && type !== "summary" && (family.endsWith("_count") || family.endsWith("_sum"))) say("non-histogram and non-summary metrics should not have _count/_sum suffix");
      const labels = new Set(metrics.samples.filter((s) => s.name === family || s.name.startsWith(`${family}_`)).flatMap((s) => Object.keys(s.labels)));
      if (type !== "histogram" && labels.has("le")) say('non-histogram metrics should not have "le" label');
      if (type !== "summary" && labels.has("quantile")) say('non-summary metrics should not have "quantile" label');
      for (const l of labels) if (camel.test(l)) say("label names should be written in 'snake_case' not 'camelCase'");
    }
    if (type !== "gauge" && type !== "untyped" && family.endsWith("_timestamp_seconds")) say('non-gauge metrics should not have "_timestamp_seconds" suffix');
    for (const t of TYPES) if (hasPart(lower, t)) say(`metric name should not include type '${t}'`);
    if (family.includes(":")) say("metric names should not contain ':'");
    if (camel.test(family)) say("metric names should be written in 'snake_case' not 'camelCase'");
    if (ABBREVIATIONS.some((a) => hasPart(lower, a))) say("metric names should not contain abbreviated units");
  }
  return problems;
}

/* How the pages write numbers and times in the browser: the twin of dashboard/formatting.py
 * (tests/unit/test_formatting.py runs both on tests/support/format_cases.json). Every page
 * script formats through DS.format, never with its own toFixed. */
(function (root) {
  "use strict";

  const NONE = "—";
  const SECONDS_FROM_MS = 10000;

  function missing(value) {
    return value === null || value === undefined || typeof value !== "number" || !Number.isFinite(value);
  }

  /* Half away from zero on the shortest decimal form of the number, as Python's side does. */
  function halfUp(value, digits) {
    const sign = value < 0 ? -1 : 1;
    const [mantissa, exp] = Math.abs(value).toExponential().split("e");
    const shifted = Number(mantissa + "e" + (Number(exp) + digits));
    return (sign * Math.round(shifted)) / 10 ** digits;
  }

  function count(value) {
    if (missing(value)) return NONE;
    return String(halfUp(value, 0) || 0);
  }

  function decimal(value, digits) {
    if (missing(value)) return NONE;
    const d = digits === undefined ? 1 : digits;
    return (halfUp(value, d) + 0).toFixed(d); // + 0: never "-0.0"
  }

  /* A chart's value, short: "12.5k", "1.2M", else up to two places without trailing zeros. */
  function compact(value) {
    if (missing(value)) return NONE;
    const a = Math.abs(value);
    if (a >= 1e6) return decimal(value / 1e6).replace(/\.0$/, "") + "M";
    if (a >= 1e4) return decimal(value / 1e3).replace(/\.0$/, "") + "k";
    return String(halfUp(value, 2) + 0);
  }

  function latencyMs(value) {
    if (missing(value)) return NONE;
    if (Math.abs(value) >= SECONDS_FROM_MS) return decimal(value / 1000) + " s";
    return decimal(value) + " ms";
  }

  function duration(seconds) {
    if (missing(seconds)) return NONE;
    let s = Math.max(0, Math.trunc(seconds));
    if (s < 60) return `${s} s`;
    let minutes = Math.floor(s / 60);
    if (minutes < 60) return `${minutes} min`;
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 24) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
    const days = Math.floor(hours / 24);
    hours %= 24;
    return hours ? `${days} d ${hours} h` : `${days} d`;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function clock(ts, now) {
    if (missing(ts)) return NONE;
    const at = new Date(ts * 1000);
    const today = new Date(now * 1000);
    const time = `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())}`;
    if (at.toISOString().slice(0, 10) === today.toISOString().slice(0, 10)) {
      return `${time}:${pad(at.getUTCSeconds())} UTC`;
    }
    return `${at.toISOString().slice(0, 10)} ${time} UTC`;
  }

  function since(ts, now) {
    if (missing(ts)) return "";
    return `since ${clock(ts, now)}, ${duration(now - ts)}`;
  }

  const format = { count, decimal, compact, latencyMs, duration, clock, since };
  if (typeof module !== "undefined" && module.exports) module.exports = format;
  if (root) root.DS = Object.assign(root.DS || {}, { format });
})(typeof window !== "undefined" ? window : null);

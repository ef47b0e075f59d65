/*
 * Formatting for people: times, durations, byte counts, round-trip times, clock differences,
 * numbers, close codes (with the names config.json gives them), bytes as hex; and hex typed by a
 * person read back as bytes.
 *
 * What this file is for: pure functions from a value to the text the page shows. They are on
 * window.echoPage, so tests can call them with values a test server could not produce (a day of
 * uptime, a gigabyte).
 *
 * What it is not: anything that touches the page or the network.
 */
echoPage.define("format", [], function (page) {
  "use strict";

  /**
   * "1000 Normal Closure", "4000", "1001 Going Away: server restarting"; `names` maps a close
   * code, as text, to its name (config.json's close_codes).
   */
  function closeDescription(code, reason, names) {
    const name = names && Object.hasOwn(names, String(code)) ? names[String(code)] : "";
    const described = name ? code + " " + name : String(code);
    return reason ? described + ": " + reason : described;
  }

  /** Local wall-clock time as HH:MM:SS.mmm. */
  function formatTime(date) {
    const pad = (number, width) => String(number).padStart(width, "0");
    return (
      pad(date.getHours(), 2) +
      ":" +
      pad(date.getMinutes(), 2) +
      ":" +
      pad(date.getSeconds(), 2) +
      "." +
      pad(date.getMilliseconds(), 3)
    );
  }

  /** A round-trip time for people: "0.4 ms", "12 ms". */
  function formatRtt(ms) {
    return (ms < 10 ? ms.toFixed(1) : String(Math.round(ms))) + " ms";
  }

  /** Local wall-clock time as HH:MM:SS, for a clock face and chart labels. */
  function formatClock(date) {
    return formatTime(date).slice(0, 8);
  }

  /** A duration for people: "42 s", "3 min 05 s", "2 h 03 min", "4 d 02 h". */
  function formatDuration(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const pad = (number) => String(number).padStart(2, "0");
    const days = Math.floor(total / 86400);
    const hours = Math.floor((total % 86400) / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const secs = total % 60;
    if (days > 0) {
      return days + " d " + pad(hours) + " h";
    }
    if (hours > 0) {
      return hours + " h " + pad(minutes) + " min";
    }
    if (minutes > 0) {
      return minutes + " min " + pad(secs) + " s";
    }
    return secs + " s";
  }

  /** A byte count for people, in powers of 1024: "512 B", "1.5 KiB", "12.3 MiB". */
  function formatBytes(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = Math.max(0, bytes);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    if (unit === 0) {
      return value + " B";
    }
    return (value < 10 ? value.toFixed(1) : String(Math.round(value))) + " " + units[unit];
  }

  /**
   * How far this device's clock is from the server's, given local minus server in seconds:
   * "12 ms ahead", "3.5 s behind", "in step" (under a millisecond).
   */
  function formatOffset(seconds) {
    const size = Math.abs(seconds);
    if (size < 0.0005) {
      return "in step";
    }
    let amount;
    if (size < 1) {
      amount = Math.round(size * 1000) + " ms";
    } else if (size < 60) {
      amount = size.toFixed(1) + " s";
    } else {
      amount = formatDuration(size);
    }
    return amount + (seconds > 0 ? " ahead" : " behind");
  }

  const NUMBER_FORMAT = new Intl.NumberFormat();
  // A binary message is shown as hex up to this many bytes: enough to recognise it.
  const HEX_DUMP_BYTES = 256;

  /** Bytes as hex pairs, "01 02 ff". */
  function hexBytes(bytes) {
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(" ");
  }

  /**
   * A binary message for people: "binary, 3 bytes: 01 02 ff"; past HEX_DUMP_BYTES, only the
   * first ones: "binary, 300 bytes, the first 256: 00 01 …". `data`: an ArrayBuffer, a typed
   * array, or a Blob (whose bytes cannot be read at once: its size only).
   */
  function describeBinary(data) {
    if (typeof Blob !== "undefined" && data instanceof Blob) {
      return "binary, " + formatCount(data.size) + " bytes";
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const size = formatCount(bytes.length) + (bytes.length === 1 ? " byte" : " bytes");
    if (bytes.length === 0) {
      return "binary, 0 bytes";
    }
    if (bytes.length <= HEX_DUMP_BYTES) {
      return "binary, " + size + ": " + hexBytes(bytes);
    }
    return "binary, " + size + ", the first " + HEX_DUMP_BYTES + ": " + hexBytes(bytes.subarray(0, HEX_DUMP_BYTES)) + " …";
  }

  /**
   * Hex typed by a person ("01 02 ff", "0102ff": spaces anywhere between bytes) as
   * {bytes: Uint8Array}, or {error: "why, in words"}.
   */
  function parseHex(text) {
    const groups = String(text).trim().split(/\s+/).filter((group) => group !== "");
    if (groups.length === 0) {
      return { error: "No bytes: type them as hex, like 01 02 ff or 0102ff." };
    }
    const digits = [];
    for (const group of groups) {
      const bad = group.match(/[^0-9a-fA-F]/);
      if (bad) {
        return { error: "Not hex: " + JSON.stringify(bad[0]) + " in " + JSON.stringify(group) + ". Bytes are pairs of 0-9 and a-f, like 01 02 ff." };
      }
      if (group.length % 2 !== 0) {
        return { error: "Not whole bytes: " + JSON.stringify(group) + " has an odd number of hex digits. Each byte is two, like 0f." };
      }
      digits.push(group);
    }
    const joined = digits.join("");
    const bytes = new Uint8Array(joined.length / 2);
    for (let index = 0; index < bytes.length; index += 1) {
      bytes[index] = parseInt(joined.slice(2 * index, 2 * index + 2), 16);
    }
    return { bytes: bytes };
  }

  function formatCount(number) {
    return NUMBER_FORMAT.format(number);
  }

  return {
    closeDescription,
    formatTime,
    formatRtt,
    formatClock,
    formatDuration,
    formatBytes,
    formatOffset,
    formatCount,
    HEX_DUMP_BYTES,
    hexBytes,
    describeBinary,
    parseHex,
  };
});

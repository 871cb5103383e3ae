"""Masking secrets in one long log line without blanks (target: a 1 MB line in milliseconds).

The line is what makes a log viewer spin: a JSON body holding a 1 MB base64 blob, with the
spec's default PostgreSQL password (`password`, a word, so masked only where it stands as a
value) as its own value at both ends. Two figures:
- after: devenv.report.mask on the 1 MB line (and on a 64 KB one), median of --runs;
- before: the single regular expression mask used until 2026-12 (kept below as
  `regex_mask`, the same five value positions), which tries the key pattern `[\\w.-]+=`
  from every position of a run of word characters, quadratic: measured once on shorter
  lines (--before-sizes, default 8, 16 and 32 KB) and extrapolated to 1 MB as quadratic
  from the longest (the fitted exponent is printed too; on a shared machine it comes out
  above 2, so the quadratic figure is the lower estimate). `--before-sizes 1048576`
  measures the 1 MB line itself (hours);
- info: the new mask's worst case, a 1 MB line that is the password repeated (an
  occurrence to judge every 8 bytes).

Standard library and devenv only. Usage: python bench/mask.py [--runs N] [--json]
                                             [--before-sizes 8192,16384,32768]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote

from devenv.config.settings import SPECS
from devenv.report import mask

TARGET_MS = 50.0
MEGABYTE = 1 << 20
SECRET = SPECS["DEVENV_POSTGRES_PASSWORD"].default  # "password"


def long_line(size: int) -> str:
    """A JSON line of `size` characters: the password as a value at both ends of a base64
    blob without blanks (deterministic, so runs compare)."""
    head, tail = f'{{"password":"{SECRET}","blob":"', f'","again":"{SECRET}"}}'
    need = size - len(head) - len(tail)
    raw = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(need // 32 + 2))
    blob = base64.b64encode(raw).decode().replace("+", "a").replace("/", "b")[:need]
    return head + blob + tail


# --- the mask it replaced: one regular expression of five value positions --------------
_CREDENTIAL_WORD = r"(?i:\b(?:password|passwd|pwd|pass|secret|token|api[_-]?key)\b)"
_VALUE_END = r"(?=$|[\s\"'`,;&)}\]>]|\.(?:\s|$))"


def regex_mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), secret.replace("$", "$$")}:
            f = re.escape(form)
            pattern = re.compile("|".join((
                rf"(?P<url>://[^\s/@:]*:){f}(?=@)",
                rf"(?P<assign>[\w.-]+\s*=\s*[\"']?){f}{_VALUE_END}",
                rf"(?P<colon>[\w.-]+[\"']?[ \t]*:[ \t]*[\"']?){f}(?=[\"']?[ \t]*(?:$|[,}}]))",
                rf"(?P<word>{_CREDENTIAL_WORD}[\"']?(?:[ \t]*[:=][ \t]*|[ \t]+(?:is[ \t]+)?)"
                rf"[\"'`]?){f}{_VALUE_END}",
                rf"(?P<quote>(?P<q>[\"'`])){f}(?=(?P=q)(?![ \t]*:))",
            )), re.MULTILINE)
            text = pattern.sub(lambda m: next(v for k, v in m.groupdict().items()
                                              if v is not None and k != "q") + "***", text)
    return text


def seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--before-sizes", default="8192,16384,32768",
                        help="line lengths the old regex is timed on (once each)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    line = long_line(MEGABYTE)
    expected = line.replace(f':"{SECRET}"', ':"***"')
    assert mask(line, [SECRET]) == expected, "the mask changed what it masks"
    after = seconds(lambda: mask(line, [SECRET]), args.runs)
    line_64k = long_line(65536)
    after_64k = seconds(lambda: mask(line_64k, [SECRET]), args.runs)
    dense = SECRET * (MEGABYTE // len(SECRET))
    after_dense = seconds(lambda: mask(dense, [SECRET]), max(1, args.runs // 4))

    sizes = sorted({int(x) for x in args.before_sizes.split(",")})
    if len(sizes) < 2 and MEGABYTE not in sizes:
        parser.error("--before-sizes needs two sizes to fit, or 1048576 itself")
    before: dict[int, float] = {}
    for size in sizes:
        short = long_line(size)
        assert regex_mask(short[:200], [SECRET]) == mask(short[:200], [SECRET])
        before[size] = seconds(lambda s=short: regex_mask(s, [SECRET]), 1)
    if MEGABYTE in before:
        exponent, before_1m = None, before[MEGABYTE]
    else:
        small, big = sizes[-2], sizes[-1]  # the two longest: the least noisy
        exponent = math.log(before[big] / before[small]) / math.log(big / small)
        before_1m = before[big] * (MEGABYTE / big) ** 2

    result = {"line_bytes": len(line), "secret": "the default password (a word)",
              "after_ms": round(after * 1000, 2), "after_64k_ms": round(after_64k * 1000, 2),
              "after_dense_ms": round(after_dense * 1000, 1),
              "before_s": {str(s): round(t, 3) for s, t in before.items()},
              "before_exponent": round(exponent, 2) if exponent is not None else None,
              "before_1m_s": round(before_1m, 1), "speedup": round(before_1m / after),
              "target_ms": TARGET_MS, "met": after * 1000 <= TARGET_MS}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"masking a {len(line):,}-byte line without blanks, secret: the default password")
    print(f"  after:  {after * 1000:8.2f} ms (64 KB: {after_64k * 1000:.2f} ms), "
          f"median of {args.runs}; target <= {TARGET_MS:g} ms: "
          f"{'met' if result['met'] else 'NOT met'}")
    print(f"  after, worst case (1 MB of the password repeated): {after_dense * 1000:.1f} ms")
    for size, took in before.items():
        print(f"  before: {took:8.3f} s  at {size:,} bytes")
    if exponent is not None:
        print(f"  before: ~{before_1m:,.0f} s ({before_1m / 3600:.1f} h) at 1 MB, extrapolated "
              f"as quadratic (fitted exponent {exponent:.2f}); {result['speedup']:,}x")


if __name__ == "__main__":
    main()

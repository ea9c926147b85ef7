"""Two-step code threads for bench/followups.py: a first request, then a change of
requirement that names the function but does not restate the first request.

Each case holds hidden checks the agent never sees: ``keep`` (what the first request asked
that the change leaves as it was) and ``new`` (what the change asks), and reference
programs for both steps: ``ref2`` passes ``keep`` and ``new``; ``ref1`` fails some of
``new`` (so the change is a real one; it passes ``keep`` too unless the change restates
the first request's examples, as parse_duration's change of unit does). ``python bench/followup_cases.py``
checks that, with no model.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    step1: str
    step2: str
    keep: tuple[str, ...]
    new: tuple[str, ...]
    ref1: str
    ref2: str


CASES: tuple[Case, ...] = (
    Case(
        "count_vowels",
        "Write a Python function count_vowels(s) that returns how many vowels (a, e, i, o, u) the string s holds, "
        "ignoring case. For example count_vowels('Hello') == 2.",
        "Change count_vowels so that a 'y' also counts as a vowel when it is the last letter of the string.",
        ("assert count_vowels('Hello') == 2", "assert count_vowels('AEIOU') == 5", "assert count_vowels('') == 0",
         "assert count_vowels('rhythm') == 0"),
        ("assert count_vowels('happy') == 2", "assert count_vowels('Y') == 1", "assert count_vowels('yes') == 1",
         "assert count_vowels('JOY') == 2"),
        "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())\n",
        "def count_vowels(s):\n    s = s.lower()\n    return sum(c in 'aeiou' for c in s) + (s.endswith('y'))\n",
    ),
    Case(
        "running_total",
        "Write a Python function running_total(xs) that returns the list of cumulative sums of the numbers in xs. "
        "For example running_total([1, 2, 3]) == [1, 3, 6].",
        "Change running_total so it takes a second, optional argument start (default 0) that the sums begin from.",
        ("assert running_total([1, 2, 3]) == [1, 3, 6]", "assert running_total([]) == []",
         "assert running_total([5, -5]) == [5, 0]"),
        ("assert running_total([1, 2], start=10) == [11, 13]", "assert running_total([5], 1) == [6]",
         "assert running_total([], 3) == []"),
        "def running_total(xs):\n    out, t = [], 0\n    for x in xs:\n        t += x\n        out.append(t)\n    return out\n",
        "def running_total(xs, start=0):\n    out, t = [], start\n    for x in xs:\n        t += x\n        out.append(t)\n"
        "    return out\n",
    ),
    Case(
        "word_freq",
        "Write a Python function word_freq(text) that returns a dict mapping each word of text, lower-cased and "
        "split on whitespace, to how often it occurs. For example word_freq('a A b') == {'a': 2, 'b': 1}.",
        "Change word_freq so that the punctuation marks . , ! ? ; : at either end of a word are ignored.",
        ("assert word_freq('a A b') == {'a': 2, 'b': 1}", "assert word_freq('') == {}",
         "assert word_freq('x  y\\nx') == {'x': 2, 'y': 1}"),
        ("assert word_freq('Hi, hi!') == {'hi': 2}", "assert word_freq('end.') == {'end': 1}",
         "assert word_freq('Wait; what?') == {'wait': 1, 'what': 1}"),
        "def word_freq(text):\n    out = {}\n    for w in text.lower().split():\n        out[w] = out.get(w, 0) + 1\n"
        "    return out\n",
        "def word_freq(text):\n    out = {}\n    for w in text.lower().split():\n        w = w.strip('.,!?;:')\n"
        "        if w:\n            out[w] = out.get(w, 0) + 1\n    return out\n",
    ),
    Case(
        "fizzbuzz",
        "Write a Python function fizzbuzz(n) that returns a list of strings for the numbers 1 to n: 'Fizz' for "
        "multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for multiples of both, else the number itself. "
        "For example fizzbuzz(5) == ['1', '2', 'Fizz', '4', 'Buzz'].",
        "Change fizzbuzz so that multiples of 7 also add 'Bazz' after the rest: 7 gives 'Bazz', 21 gives "
        "'FizzBazz', 35 gives 'BuzzBazz' and 105 gives 'FizzBuzzBazz'.",
        ("assert fizzbuzz(5) == ['1', '2', 'Fizz', '4', 'Buzz']", "assert fizzbuzz(15)[-1] == 'FizzBuzz'",
         "assert fizzbuzz(0) == []"),
        ("assert fizzbuzz(7)[-1] == 'Bazz'", "assert fizzbuzz(21)[-1] == 'FizzBazz'",
         "assert fizzbuzz(35)[-1] == 'BuzzBazz'", "assert fizzbuzz(105)[-1] == 'FizzBuzzBazz'",
         "assert fizzbuzz(14)[-1] == 'Bazz'"),
        "def fizzbuzz(n):\n    return ['FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 "
        "else str(i) for i in range(1, n + 1)]\n",
        "def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n"
        "        s = ('Fizz' if i % 3 == 0 else '') + ('Buzz' if i % 5 == 0 else '') + ('Bazz' if i % 7 == 0 else '')\n"
        "        out.append(s or str(i))\n    return out\n",
    ),
    Case(
        "parse_duration",
        "Write a Python function parse_duration(s) that turns strings like '1h30m', '45m' or '2h' into a number of "
        "minutes. For example parse_duration('1h30m') == 90.",
        "Change parse_duration to accept seconds too, written with 's' (like '1m30s'), and to return seconds "
        "instead of minutes, so parse_duration('1h30m') now gives 5400.",
        ("assert parse_duration('2h') == 7200", "assert parse_duration('45m') == 2700",
         "assert parse_duration('1h30m') == 5400"),
        ("assert parse_duration('1m30s') == 90", "assert parse_duration('10s') == 10",
         "assert parse_duration('1h1s') == 3601"),
        "import re\n\ndef parse_duration(s):\n    unit = {'h': 60, 'm': 1}\n"
        "    return sum(int(n) * unit[u] for n, u in re.findall(r'(\\d+)([hm])', s))\n",
        "import re\n\ndef parse_duration(s):\n    unit = {'h': 3600, 'm': 60, 's': 1}\n"
        "    return sum(int(n) * unit[u] for n, u in re.findall(r'(\\d+)([hms])', s))\n",
    ),
    Case(
        "merge_intervals",
        "Write a Python function merge_intervals(intervals) that merges overlapping [start, end] intervals and "
        "returns them sorted by start. For example merge_intervals([[1, 3], [2, 6], [8, 10]]) == [[1, 6], [8, 10]].",
        "Change merge_intervals so that intervals that only touch, like [1, 2] and [2, 3], are not merged; "
        "only a real overlap merges.",
        ("assert merge_intervals([[1, 3], [2, 6], [8, 10]]) == [[1, 6], [8, 10]]", "assert merge_intervals([]) == []",
         "assert merge_intervals([[5, 7], [1, 2]]) == [[1, 2], [5, 7]]"),
        ("assert merge_intervals([[1, 2], [2, 3]]) == [[1, 2], [2, 3]]",
         "assert merge_intervals([[1, 4], [3, 5]]) == [[1, 5]]",
         "assert merge_intervals([[4, 6], [1, 4], [2, 3]]) == [[1, 4], [4, 6]]"),
        "def merge_intervals(intervals):\n    out = []\n    for s, e in sorted(intervals):\n"
        "        if out and s <= out[-1][1]:\n            out[-1][1] = max(out[-1][1], e)\n"
        "        else:\n            out.append([s, e])\n    return out\n",
        "def merge_intervals(intervals):\n    out = []\n    for s, e in sorted(intervals):\n"
        "        if out and s < out[-1][1]:\n            out[-1][1] = max(out[-1][1], e)\n"
        "        else:\n            out.append([s, e])\n    return out\n",
    ),
    Case(
        "slugify",
        "Write a Python function slugify(title) that lower-cases title, drops every character that is not a letter, "
        "a digit or a space, and joins the words with '-'. For example slugify('Hello, World!') == 'hello-world'.",
        "Change slugify to take an optional max_length (default None): when given, the slug is cut to at most "
        "that many characters and never ends with '-'.",
        ("assert slugify('Hello, World!') == 'hello-world'", "assert slugify('  A  b ') == 'a-b'",
         "assert slugify('Rock & Roll 2') == 'rock-roll-2'"),
        ("assert slugify('Hello World', max_length=7) == 'hello-w'",
         "assert slugify('Hello World', max_length=6) == 'hello'", "assert slugify('abc', max_length=10) == 'abc'"),
        "def slugify(title):\n    kept = ''.join(c for c in title.lower() if c.isalnum() or c == ' ')\n"
        "    return '-'.join(kept.split())\n",
        "def slugify(title, max_length=None):\n    kept = ''.join(c for c in title.lower() if c.isalnum() or c == ' ')\n"
        "    slug = '-'.join(kept.split())\n    if max_length is not None:\n        slug = slug[:max_length].rstrip('-')\n"
        "    return slug\n",
    ),
    Case(
        "to_roman",
        "Write a Python function to_roman(n) that converts an integer from 1 to 3999 to a Roman numeral. "
        "For example to_roman(1994) == 'MCMXCIV'.",
        "Change to_roman so that it raises ValueError for a number outside 1 to 3999.",
        ("assert to_roman(1994) == 'MCMXCIV'", "assert to_roman(4) == 'IV'", "assert to_roman(3999) == 'MMMCMXCIX'"),
        ("try:\n    to_roman(0)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('0 accepted')",
         "try:\n    to_roman(4000)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('4000 accepted')",
         "try:\n    to_roman(-5)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('-5 accepted')"),
        "def to_roman(n):\n    vals = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'), (50, 'L'),\n"
        "            (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n    out = ''\n"
        "    for v, s in vals:\n        while n >= v:\n            out += s\n            n -= v\n    return out\n",
        "def to_roman(n):\n    if not 1 <= n <= 3999:\n        raise ValueError(n)\n"
        "    vals = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'), (50, 'L'),\n"
        "            (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n    out = ''\n"
        "    for v, s in vals:\n        while n >= v:\n            out += s\n            n -= v\n    return out\n",
    ),
    Case(
        "flatten",
        "Write a Python function flatten(xs) that flattens a list nested to any depth. "
        "For example flatten([1, [2, [3]], 4]) == [1, 2, 3, 4].",
        "Change flatten to take an optional depth (default None, meaning all the way): flatten(xs, depth=1) "
        "removes only one level of nesting.",
        ("assert flatten([1, [2, [3]], 4]) == [1, 2, 3, 4]", "assert flatten([]) == []",
         "assert flatten([[[[5]]]]) == [5]"),
        ("assert flatten([1, [2, [3]]], depth=1) == [1, 2, [3]]", "assert flatten([[1, [2]]], depth=0) == [[1, [2]]]",
         "assert flatten([[1, [2, [3]]]], depth=2) == [1, 2, [3]]"),
        "def flatten(xs):\n    out = []\n    for x in xs:\n        out.extend(flatten(x) if isinstance(x, list) else [x])\n"
        "    return out\n",
        "def flatten(xs, depth=None):\n    out = []\n    for x in xs:\n        if isinstance(x, list) and depth != 0:\n"
        "            out.extend(flatten(x, None if depth is None else depth - 1))\n        else:\n            out.append(x)\n"
        "    return out\n",
    ),
    Case(
        "median",
        "Write a Python function median(xs) that returns the median of a non-empty list of numbers. "
        "For example median([3, 1, 2]) == 2 and median([1, 2, 3, 4]) == 2.5.",
        "Change median so that it skips None values in the list and returns None when no number is left.",
        ("assert median([3, 1, 2]) == 2", "assert median([1, 2, 3, 4]) == 2.5", "assert median([7]) == 7"),
        ("assert median([]) is None", "assert median([None, 5, 1, None, 3]) == 3", "assert median([None]) is None"),
        "def median(xs):\n    s = sorted(xs)\n    n = len(s)\n    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2\n",
        "def median(xs):\n    s = sorted(x for x in xs if x is not None)\n    n = len(s)\n    if not n:\n        return None\n"
        "    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2\n",
    ),
    Case(
        "caesar",
        "Write a Python function caesar(s, k) that shifts each letter of s by k places in the alphabet, wrapping "
        "around and keeping its case; other characters stay as they are. For example caesar('abz', 1) == 'bca'.",
        "Change caesar so that digits are shifted by k places too, wrapping around within 0-9.",
        ("assert caesar('abz', 1) == 'bca'", "assert caesar('Hello, World!', 3) == 'Khoor, Zruog!'",
         "assert caesar('abc', -1) == 'zab'"),
        ("assert caesar('a9', 1) == 'b0'", "assert caesar('123', 10) == '123'", "assert caesar('0', -1) == '9'"),
        "def caesar(s, k):\n    out = []\n    for c in s:\n        if c.isalpha() and c.isascii():\n"
        "            base = ord('a') if c.islower() else ord('A')\n            out.append(chr((ord(c) - base + k) % 26 + base))\n"
        "        else:\n            out.append(c)\n    return ''.join(out)\n",
        "def caesar(s, k):\n    out = []\n    for c in s:\n        if c.isalpha() and c.isascii():\n"
        "            base = ord('a') if c.islower() else ord('A')\n            out.append(chr((ord(c) - base + k) % 26 + base))\n"
        "        elif c.isdigit():\n            out.append(str((int(c) + k) % 10))\n"
        "        else:\n            out.append(c)\n    return ''.join(out)\n",
    ),
    Case(
        "group_by_length",
        "Write a Python function group_by_length(words) that returns a dict from word length to the list of words "
        "of that length, in the order they come. For example "
        "group_by_length(['a', 'bb', 'c']) == {1: ['a', 'c'], 2: ['bb']}.",
        "Change group_by_length so that each list is sorted alphabetically and holds each word only once.",
        ("assert group_by_length(['a', 'bb', 'c']) == {1: ['a', 'c'], 2: ['bb']}", "assert group_by_length([]) == {}",
         "assert group_by_length(['xyz']) == {3: ['xyz']}"),
        ("assert group_by_length(['b', 'a', 'b']) == {1: ['a', 'b']}",
         "assert group_by_length(['dd', 'cc', 'dd', 'e']) == {2: ['cc', 'dd'], 1: ['e']}"),
        "def group_by_length(words):\n    out = {}\n    for w in words:\n        out.setdefault(len(w), []).append(w)\n"
        "    return out\n",
        "def group_by_length(words):\n    out = {}\n    for w in words:\n        out.setdefault(len(w), set()).add(w)\n"
        "    return {k: sorted(v) for k, v in out.items()}\n",
    ),
    Case(
        "is_leap",
        "Write a Python function is_leap(year) that says whether a year of the Gregorian calendar is a leap year. "
        "For example is_leap(2000) is True and is_leap(1900) is False.",
        "Change is_leap so that it also accepts the year as a string of digits, like '2024', and returns False for "
        "a string that is not a number.",
        ("assert is_leap(2000) is True", "assert is_leap(1900) is False", "assert is_leap(2024) is True",
         "assert is_leap(2023) is False"),
        ("assert is_leap('2024') is True", "assert is_leap('1900') is False", "assert is_leap('abc') is False"),
        "def is_leap(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n",
        "def is_leap(year):\n    if isinstance(year, str):\n        if not year.isdigit():\n            return False\n"
        "        year = int(year)\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n",
    ),
)


def passes(code: str, checks: tuple[str, ...]) -> bool:
    """``code`` then every check, in a plain subprocess (references only: agent code runs
    in code-sandbox)."""
    program = code + "\n\n" + "\n".join(checks) + "\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30).returncode == 0


def main() -> None:
    bad = []
    for c in CASES:
        if not (passes(c.ref2, c.keep) and passes(c.ref2, c.new) and not passes(c.ref1, c.new)):
            bad.append(c.name)
        partial = [chk for chk in c.new if passes(c.ref1, (chk,))]
        kept = "" if passes(c.ref1, c.keep) else ", the change restates the first step's examples"
        print(f"{c.name}: ok" + (f" (ref1 already passes {len(partial)} of {len(c.new)} new checks{kept})"
                                 if partial or kept else ""))
    if bad:
        raise SystemExit(f"cases whose references disagree with their checks: {bad}")
    print(f"{len(CASES)} cases consistent")


if __name__ == "__main__":
    main()

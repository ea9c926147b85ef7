"""Evaluation metrics as plain functions (no model, no bus): pass@k, GSM8K answer matching,
choice by log-likelihood, perplexity the way llama-perplexity computes it, KL divergence and
same-top-token rate against a reference model, and speed figures."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import numpy as np

# --- pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code") ----------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct.

    1 - C(n-c, k) / C(n, k), computed as a product to stay exact for large n.
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem (n={n})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k over problems given (n, c) per problem."""
    if not counts:
        return 0.0
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))


# --- GSM8K-style final-number exact match -----------------------------------------------------
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*[:\s]*\**\s*(-?\$?[\d,]*\.?\d+)", re.I)


def normalize_number(text: str) -> str | None:
    """'$1,234.50' -> '1234.5', '18.00' -> '18', '-3' -> '-3'; None if not a number."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


def extract_final_number(text: str) -> str | None:
    """The final numeric answer of a solution text, normalised.

    Order of preference: after the GSM8K marker '####', after 'the answer is', inside the
    last \\boxed{}, else the last number in the text.
    """
    if "####" in text:
        nums = _NUMBER.findall(text.split("####")[-1])
        if nums:
            return normalize_number(nums[0])
    m = _ANSWER_IS.findall(text)
    if m:
        return normalize_number(m[-1])
    boxed = re.findall(r"\\boxed\{([^}]*)\}", text)
    if boxed and (nums := _NUMBER.findall(boxed[-1])):
        return normalize_number(nums[-1])
    nums = _NUMBER.findall(text)
    return normalize_number(nums[-1]) if nums else None


def qa_exact_match(prediction: str, gold: str) -> bool:
    """True when the prediction's final number equals the gold answer's final number."""
    want = extract_final_number(gold)
    got = extract_final_number(prediction)
    return want is not None and got == want


# --- multiple choice by log-likelihood --------------------------------------------------------


def choose(logliks: Sequence[float], lengths: Sequence[int] | None = None) -> int:
    """Index of the most likely choice; with ``lengths`` (characters), per-character
    normalised (lm-eval-harness's acc_norm) so long answers are not penalised."""
    if not logliks:
        raise ValueError("no choices")
    scores = [ll / max(1, n) for ll, n in zip(logliks, lengths, strict=True)] if lengths else list(logliks)
    return int(np.argmax(scores))


# --- perplexity (llama-perplexity's method) ---------------------------------------------------


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (numerically stable)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def chunk_spans(n_tokens: int, n_ctx: int, limit: int | None = None) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) windows of n_ctx tokens (a short tail is dropped)."""
    spans = [(s, s + n_ctx) for s in range(0, n_tokens - n_ctx + 1, n_ctx)]
    return spans[:limit] if limit is not None else spans


def scored_positions(n_ctx: int) -> range:
    """Positions whose logits are scored: the second half of a chunk, predicting token i+1.

    llama-perplexity scores from first = n_ctx/2 to n_ctx-2 so every scored token has at
    least n_ctx/2 tokens of context.
    """
    return range(n_ctx // 2, n_ctx - 1)


def chunk_nll(logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """Negative log-likelihoods of one chunk's second half.

    ``logits[i]`` is the model's output after reading tokens[0..i]; it predicts tokens[i+1].
    """
    n = len(tokens)
    pos = np.array(scored_positions(n))
    lp = log_softmax(np.asarray(logits)[pos])
    return -lp[np.arange(len(pos)), np.asarray(tokens)[pos + 1]]


def perplexity(nlls: Sequence[float] | np.ndarray) -> float:
    """PPL = exp(mean NLL)."""
    a = np.asarray(nlls, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no scored tokens")
    return float(math.exp(a.mean()))


def perplexity_stderr(nlls: Sequence[float] | np.ndarray) -> float:
    """Standard error of PPL from the NLLs' spread (delta method: PPL * stderr(mean NLL))."""
    a = np.asarray(nlls, dtype=np.float64)
    if a.size < 2:
        return 0.0
    return float(math.exp(a.mean()) * a.std(ddof=1) / math.sqrt(a.size))


# --- KL divergence against a reference model --------------------------------------------------


def kl_and_top(ref_logits: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position: KL(P_ref || P_model) in nats, and whether both argmaxes agree.

    Both arrays are [positions, vocab] logits of two models on the same tokens (same
    tokenizer). Extra vocab rows of either side (padding) are cut to the common width.
    """
    v = min(ref_logits.shape[-1], logits.shape[-1])
    lp_ref = log_softmax(ref_logits[..., :v])
    lp = log_softmax(logits[..., :v])
    kl = (np.exp(lp_ref) * (lp_ref - lp)).sum(axis=-1)
    same = lp_ref.argmax(axis=-1) == lp.argmax(axis=-1)
    return np.maximum(kl, 0.0), same


def kld_summary(kls: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """What llama-perplexity --kl-divergence prints: mean, median, p99, max KLD, same-top rate."""
    kls = np.asarray(kls, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if kls.size == 0:
        return {}
    return {
        "kld_mean": float(kls.mean()),
        "kld_median": float(np.median(kls)),
        "kld_p99": float(np.percentile(kls, 99)),
        "kld_max": float(kls.max()),
        "same_top": float(same.mean()),
        "kld_positions": int(kls.size),
    }


# --- speed ------------------------------------------------------------------------------------


def rate(tokens: int, seconds: float) -> float:
    """Tokens per second (0 when nothing was timed)."""
    return tokens / seconds if seconds > 0 and tokens > 0 else 0.0

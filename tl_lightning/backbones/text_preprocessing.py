"""Text preprocessing, owned by the text backbone: tokenise (truncating at the head, or keeping head and tail),
and a collate that pads each batch to its longest sequence (dynamic padding).

Each text is tokenised once: ``TextPreprocessing.warm(texts)`` encodes a list in one batched call (the text
datamodule does it per split, through an on-disk cache), and the per-sample transform then looks the ids up.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch


@dataclass(frozen=True)
class TextSpec:
    """What a text backbone expects: tokens per text, pooling, truncation, and which tokenizer."""

    max_length: int
    pooling: str = "mean"  # mean (masked) | cls
    truncation: str = "head"  # head | head_tail (the first quarter and the last three quarters of the budget)
    tokenizer: str = ""


class Tokenize:
    """The per-sample transform: a text to its token ids (a stable repr: the feature cache keys on it)."""

    def __init__(self, prep: "TextPreprocessing"):
        self.prep = prep

    def __call__(self, text: str) -> List[int]:
        ids = self.prep.memo.get(text)
        return ids if ids is not None else self.prep.encode([text])[0]

    def __repr__(self) -> str:
        return f"Tokenize({self.prep.spec})"


class TextPreprocessing:
    modality = "text"

    def __init__(self, tokenizer, spec: TextSpec, pad_to: Optional[int] = None):
        self.tokenizer = tokenizer
        self.spec = spec
        self.pad_to = pad_to  # None: pad each batch to its longest text; an int: to that length (benchmarks)
        self.memo: Dict[str, List[int]] = {}

    def encode(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids with special tokens, at most ``max_length`` each."""
        tok, limit = self.tokenizer, self.spec.max_length
        if self.spec.truncation == "head":
            return tok(list(texts), truncation=True, max_length=limit, add_special_tokens=True)["input_ids"]
        prefix, suffix = self._special_tokens()
        budget = limit - len(prefix) - len(suffix)
        head = budget // 4
        out = []
        for ids in tok(list(texts), add_special_tokens=False, truncation=False)["input_ids"]:
            if len(ids) > budget:
                ids = ids[:head] + ids[len(ids) - (budget - head):]
            out.append(prefix + ids + suffix)
        return out

    def _special_tokens(self):
        """The ids the tokenizer puts before and after a single text ([CLS] ... [SEP], <s> ... </s>, ...)."""
        with_special = self.tokenizer("hello", add_special_tokens=True)["input_ids"]
        plain = self.tokenizer("hello", add_special_tokens=False)["input_ids"]
        at = next(k for k in range(len(with_special)) if with_special[k:k + len(plain)] == plain)
        return with_special[:at], with_special[at + len(plain):]

    def warm(self, texts: Sequence[str], ids: Optional[List[List[int]]] = None) -> List[List[int]]:
        """Tokenise ``texts`` in one call (or take ``ids`` from a cache) and remember them."""
        if ids is None:
            todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
            self.memo.update(zip(todo, self.encode(todo) if todo else []))
        else:  # one id list per text, in the order of ``texts``
            self.memo.update(zip(texts, ids))
        return [self.memo[t] for t in texts]

    def transform(self, train: bool, augment: str = "none") -> Tokenize:
        return Tokenize(self)

    def deterministic(self, augment: str) -> bool:
        return True  # no text augmentation: features of a frozen encoder may be cached

    def collate(self, items: List[Dict[str, Any]]) -> Dict[str, Any]:
        longest = max(len(it["inputs"]) for it in items)
        width = max(self.pad_to or 0, longest)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["inputs"])
            ids[row, :n] = torch.as_tensor(it["inputs"], dtype=torch.long)
            mask[row, :n] = 1
        batch = {key: torch.as_tensor([it[key] for it in items]) for key in ("target", "index", "group")}
        return {"inputs": {"input_ids": ids, "attention_mask": mask}, **batch}


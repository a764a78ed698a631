"""Stages 3 and 4: exact and near-duplicate removal. The first document of each group is the one kept.

Exact: a 128-bit BLAKE2b digest of the *normalised* text (so copies that differ only in whitespace, line endings
or Unicode spelling count as one). Memory: one digest and one id per kept document.

Near: documents as sets of word shingles (``shingle_size`` consecutive lower-cased words), compared by Jaccard
similarity |A∩B| / |A∪B|. Comparing every pair is quadratic, so we use MinHash + LSH (``datasketch``):

- MinHash: ``num_perm`` random hash permutations; a document's signature is the minimum of each over its
  shingles. Two signatures agree at one position with probability exactly Jaccard(A, B), so the fraction of
  agreeing positions estimates it (standard error ~ sqrt(J(1-J)/num_perm): ±0.035 at J=0.8 with 128).
- LSH: the signature is cut into ``bands`` bands of ``rows`` values; documents that agree on a whole band become
  candidates. P(candidate) = 1 - (1 - J^rows)^bands: with 32 bands of 4 rows that is 0.9999 at J=0.7 and 0.01
  at J=0.15, so true duplicates are almost never missed and few unrelated pairs are looked at.
- every candidate is then checked: it is a duplicate when the estimated Jaccard is >= ``threshold``.

Every document enters the index, mapped to the kept first document of its cluster, so a cluster is a connected
component of the "near-duplicate" relation: a copy of a copy is found even when it is no longer close to the
original, and each removed document names the one kept document of its cluster (``duplicate_of``). Shingles are hashed with CRC-32 (4x faster than datasketch's default SHA-1 here; a collision
between two of a document's few thousand shingles is negligible) and the permutations are built once per
process, so workers compute signatures at a few µs per word. Memory: ~1.5 KB per document in the index.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib

import numpy as np

from scratchllm.data.curation.config import NearDedupConfig

_WORD = re.compile(r"\w+")
SCHEME = "affine32"


class ExactDeduplicator:
    """Remembers the digest of every kept text; ``check`` returns the id of an earlier identical text."""

    def __init__(self) -> None:
        self._seen: dict[bytes, str] = {}

    def check(self, doc_id: str, text: str) -> str | None:
        key = self._key(text)
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = doc_id
        return first

    def redirect(self, text: str, doc_id: str) -> None:
        """Later copies of ``text`` name ``doc_id`` (the kept representative, when near dedup removed the first)."""
        self._seen[self._key(text)] = doc_id

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def __len__(self) -> int:
        return len(self._seen)


def words_of(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters, digits, underscore) of ``text``."""
    return _WORD.findall(text.lower())


def shingles(text: str, size: int) -> set[str]:
    """The set of ``size``-word shingles of ``text`` (a shorter text is one shingle; no words: empty set)."""
    w = words_of(text)
    if len(w) <= size:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + size]) for i in range(len(w) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity of two shingle sets (what MinHash estimates)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int) -> object:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations


def _minhash(cfg: NearDedupConfig, hashvalues: np.ndarray | None = None):  # -> datasketch.MinHash
    from datasketch import MinHash

    if hashvalues is not None:
        from datasketch import LeanMinHash

        return LeanMinHash(seed=cfg.seed, hashvalues=hashvalues, scheme=SCHEME)
    return MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=zlib.crc32, scheme=SCHEME,
                   permutations=_permutations(cfg.num_perm, cfg.seed))


def signature(text: str, cfg: NearDedupConfig) -> np.ndarray | None:
    """MinHash signature (``num_perm`` uint32) of the document's shingles; None when it has no words."""
    sh = shingles(text, cfg.shingle_size)
    if not sh:
        return None
    m = _minhash(cfg)
    m.update_batch([s.encode("utf-8", "surrogatepass") for s in sh])
    return np.array(m.hashvalues, copy=True)


def signature_batch(texts: list[str], cfg: NearDedupConfig) -> list[np.ndarray | None]:
    """Worker entry point: ``signature`` over a chunk of documents."""
    return [signature(t, cfg) for t in texts]


class NearDeduplicator:
    """The LSH index of every document seen, each mapped to the kept representative of its cluster."""

    def __init__(self, cfg: NearDedupConfig) -> None:
        from datasketch import MinHashLSH

        self.cfg = cfg
        rows = cfg.num_perm // cfg.bands
        self.lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.bands, rows))
        self._signatures: list[np.ndarray] = []
        self._ids: list[str] = []
        self._representative: list[int] = []  # index of the kept document of each indexed one's cluster

    def check(self, doc_id: str, sig: np.ndarray | None) -> tuple[str, float, str] | None:
        """None when ``doc_id`` starts a new cluster (it is kept), else ``(kept representative, estimated Jaccard,
        id of the document it matched)``. Either way it joins the index, so a later document close to it but
        not to the representative is still found (clusters are connected components, not balls)."""
        if sig is None:
            return None
        lean = _minhash(self.cfg, sig)
        best: tuple[int, float] | None = None
        for key in self.lsh.query(lean):
            est = float(np.count_nonzero(self._signatures[key] == sig)) / sig.size
            if est >= self.cfg.threshold and (best is None or est > best[1]):
                best = (key, est)
        key = len(self._ids)
        self.lsh.insert(key, lean, check_duplication=False)
        self._signatures.append(sig)
        self._ids.append(doc_id)
        if best is None:
            self._representative.append(key)
            return None
        rep = self._representative[best[0]]
        self._representative.append(rep)
        return self._ids[rep], best[1], self._ids[best[0]]

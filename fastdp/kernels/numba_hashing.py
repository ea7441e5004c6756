"""Feature hashing of UTF-8 documents into CSR rows, in Numba (prange over documents).

The columns are those of scikit-learn's HashingVectorizer with its default analyzer: tokens are
the matches of r"(?u)\\b\\w\\w+\\b" (maximal runs of two or more word characters), a bigram is the
string "w1 w2" (one space), each token is hashed with MurmurHash3 x86 32-bit (seed 0, signed
result h), its column is abs(h) % n_features and, with alternate_sign, its value is +1 if h >= 0
else -1. Duplicate columns in a row are summed; entries that cancel to 0 stay as explicit zeros,
as scipy's sum_duplicates leaves them in scikit-learn's output.

Word characters are bytes: ASCII letters, digits and '_', and every byte >= 0x80. That is
Python's Unicode \\w on ASCII text and on letters and digits beyond it; non-ASCII punctuation and
spaces (U+2014, U+00A0, curly quotes) and combining marks count as word characters here, where
Python splits at them.

The plan has three parallel passes, each thread owning the rows it writes: count the tokens of
every document; hash them into each row's slot of a raw buffer, sort the row and sum duplicates
in place; copy the rows, packed, into the output arrays (normalizing them on the way).
All arithmetic of the hash is in int64, masked to 32 bits.
"""

import numpy as np
from numba import njit, prange

NORM_NONE = 0
NORM_L1 = 1
NORM_L2 = 2

_MASK32 = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


@njit(inline="always", cache=True)
def _rotl32(x: int, r: int) -> int:
    """x (a 32-bit value) rotated left by r bits."""
    return ((x << r) | (x >> (32 - r))) & _MASK32


@njit(inline="always", cache=True)
def _scramble(k: int) -> int:
    """MurmurHash3's mixing of one 32-bit block k before it enters the state."""
    return (_rotl32((k * _C1) & _MASK32, 15) * _C2) & _MASK32


@njit(inline="always", cache=True)
def _mix_block(h: int, k: int) -> int:
    """The state h after the 32-bit block k (four bytes, little-endian)."""
    h = _rotl32(h ^ _scramble(k), 13)
    return (h * 5 + 0xE6546B64) & _MASK32


@njit(inline="always", cache=True)
def _finalize(h: int, n: int) -> int:
    """Final avalanche of a state h after n bytes; the signed 32-bit hash as an int64."""
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    h ^= h >> 16
    return h - (1 << 32) if h >= (1 << 31) else h


@njit(cache=True)
def murmurhash3_32(buf, start, stop, seed):
    """MurmurHash3 x86 32-bit of the bytes buf[start:stop], signed.

    buf:   (n,) uint8
    start, stop: int, 0 <= start <= stop <= n
    seed:  int in [0, 2**32)
    Returns an int in [-2**31, 2**31), equal to sklearn.utils.murmurhash3_32(bytes, seed).
    """
    n = stop - start
    h = seed & _MASK32
    end = start + (n & ~3)
    for i in range(start, end, 4):
        k = (np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8) | (np.int64(buf[i + 2]) << 16)
             | (np.int64(buf[i + 3]) << 24))
        h = _mix_block(h, k)
    k = 0
    for i in range(stop - 1, end - 1, -1):
        k = (k << 8) | np.int64(buf[i])
    if n & 3:
        h ^= _scramble(k)
    return _finalize(h, n)


@njit(inline="always", cache=True)
def _joined_byte(buf, s1, n1, s2, i):
    """Byte i of buf[s1:s1 + n1] + b" " + buf[s2:...]."""
    if i < n1:
        return np.int64(buf[s1 + i])
    if i == n1:
        return np.int64(32)
    return np.int64(buf[s2 + i - n1 - 1])


@njit(cache=True)
def murmurhash3_32_joined(buf, s1, e1, s2, e2, seed):
    """MurmurHash3 x86 32-bit, signed, of buf[s1:e1] + b" " + buf[s2:e2] (a bigram), no copy.

    buf: (n,) uint8; 0 <= s1 <= e1 <= n and 0 <= s2 <= e2 <= n; seed: int in [0, 2**32).
    """
    n1 = e1 - s1
    n = n1 + 1 + e2 - s2
    h = seed & _MASK32
    end = n & ~3
    for i in range(0, end, 4):
        k = (_joined_byte(buf, s1, n1, s2, i) | (_joined_byte(buf, s1, n1, s2, i + 1) << 8)
             | (_joined_byte(buf, s1, n1, s2, i + 2) << 16)
             | (_joined_byte(buf, s1, n1, s2, i + 3) << 24))
        h = _mix_block(h, k)
    k = 0
    for i in range(n - 1, end - 1, -1):
        k = (k << 8) | _joined_byte(buf, s1, n1, s2, i)
    if n & 3:
        h ^= _scramble(k)
    return _finalize(h, n)


@njit(inline="always", cache=True)
def _is_word(b) -> bool:
    return (b >= 0x80 or (b >= 97 and b <= 122) or (b >= 65 and b <= 90)
            or (b >= 48 and b <= 57) or b == 95)


@njit(inline="always", cache=True)
def _next_token(buf, pos, stop):
    """(start, end) of the first run of >= 2 word bytes in buf[pos:stop]; (stop, stop) if none."""
    while pos < stop:
        while pos < stop and not _is_word(buf[pos]):
            pos += 1
        start = pos
        while pos < stop and _is_word(buf[pos]):
            pos += 1
        if pos - start >= 2:
            return start, pos
    return stop, stop


@njit(parallel=True, cache=True)
def count_features(buf, offsets, bigrams, counts):
    """Number of hashed features (tokens, plus bigrams) of every document, duplicates included.

    buf:     (n_bytes,) uint8, the UTF-8 documents one after the other
    offsets: (n_docs + 1,) int64, document d is buf[offsets[d]:offsets[d + 1]]
    bigrams: bool, also count the n_tokens - 1 bigrams of each document
    counts:  (n_docs,) int64, OUT
    """
    for d in prange(counts.shape[0]):
        stop = offsets[d + 1]
        n = 0
        start, end = _next_token(buf, offsets[d], stop)
        while end - start >= 2:
            n += 1
            start, end = _next_token(buf, end, stop)
        counts[d] = n + (n - 1 if bigrams and n > 1 else 0)


@njit(parallel=True, cache=True)
def hash_rows(buf, offsets, raw_indptr, n_features, alternate_sign, bigrams, keys, cols, vals,
              row_nnz):
    """Hash every document's features into its raw slot, then sort the slot and sum duplicates.

    buf, offsets, bigrams: as in count_features
    raw_indptr:     (n_docs + 1,) int64, row d owns raw slots raw_indptr[d]:raw_indptr[d + 1]
                    (the prefix sum of count_features' counts)
    n_features:     int in [1, 2**31)
    alternate_sign: bool, value -1 for features with a negative hash, else all values are +1
    keys:           (raw_indptr[-1],) int64, scratch: 2 * column + (value > 0)
    cols:           (raw_indptr[-1],) int64, OUT: row d's sorted distinct columns at its slot start
    vals:           (raw_indptr[-1],) float64, OUT: their summed values, beside them
    row_nnz:        (n_docs,) int64, OUT: number of distinct columns of each row
    """
    for d in prange(row_nnz.shape[0]):
        stop = offsets[d + 1]
        k = raw_indptr[d]
        p_start, p_end = stop, stop
        start, end = _next_token(buf, offsets[d], stop)
        while end - start >= 2:
            h = murmurhash3_32(buf, start, end, 0)
            keys[k] = 2 * (abs(h) % n_features) + (1 if h >= 0 or not alternate_sign else 0)
            k += 1
            if bigrams and p_end > p_start:
                h = murmurhash3_32_joined(buf, p_start, p_end, start, end, 0)
                keys[k] = 2 * (abs(h) % n_features) + (1 if h >= 0 or not alternate_sign else 0)
                k += 1
            p_start, p_end = start, end
            start, end = _next_token(buf, end, stop)
        row = keys[raw_indptr[d]:k]
        row.sort()
        u = raw_indptr[d] - 1
        prev = -1
        for key in row:
            col = key >> 1
            if col != prev:
                u += 1
                cols[u] = col
                vals[u] = 0.0
                prev = col
            vals[u] += 2.0 * (key & 1) - 1.0
        row_nnz[d] = u + 1 - raw_indptr[d]


@njit(parallel=True, cache=True)
def pack_rows(raw_indptr, cols, vals, norm, indptr, indices, data):
    """Copy every row's distinct columns and values from its raw slot into the CSR arrays.

    raw_indptr, cols, vals: as filled by hash_rows
    norm:    int, NORM_NONE, NORM_L1 (divide by sum |v|) or NORM_L2 (by sqrt(sum v^2)); rows of
             norm 0 are left as they are
    indptr:  (n_docs + 1,) int64, the prefix sum of hash_rows' row_nnz
    indices: (indptr[-1],) int32 or int64, OUT: columns, sorted in each row
    data:    (indptr[-1],) float32 or float64, OUT: values (norms computed in float64)
    """
    for d in prange(indptr.shape[0] - 1):
        src = raw_indptr[d]
        dst = indptr[d]
        n = indptr[d + 1] - dst
        scale = 0.0
        if norm == NORM_L1:
            for j in range(src, src + n):
                scale += abs(vals[j])
        elif norm == NORM_L2:
            for j in range(src, src + n):
                scale += vals[j] * vals[j]
            scale = np.sqrt(scale)
        if scale == 0.0:
            scale = 1.0
        for j in range(n):
            indices[dst + j] = cols[src + j]
            data[dst + j] = vals[src + j] / scale


def hash_documents(buf: np.ndarray, offsets: np.ndarray, n_features: int, alternate_sign: bool,
                   bigrams: bool, norm: int,
                   dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays (indptr, indices, data) of the hashed features of every document.

    buf: (n_bytes,) uint8; offsets: (n_docs + 1,) int64, as in count_features.
    n_features, alternate_sign, bigrams: as in hash_rows; norm: as in pack_rows.
    dtype: float32 or float64, the dtype of data.
    Returns indptr (n_docs + 1,), indices (nnz,), both int32 when n_features and nnz fit in it
    (else int64), and data (nnz,) dtype: rows with sorted, distinct columns (scipy's canonical
    format).
    """
    n_docs = offsets.shape[0] - 1
    raw_indptr = np.zeros(n_docs + 1, dtype=np.int64)
    count_features(buf, offsets, bigrams, raw_indptr[1:])
    np.cumsum(raw_indptr, out=raw_indptr)
    n_raw = int(raw_indptr[-1])
    cols = np.empty(n_raw, dtype=np.int64)
    vals = np.empty(n_raw, dtype=np.float64)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    hash_rows(buf, offsets, raw_indptr, n_features, alternate_sign, bigrams,
              np.empty(n_raw, dtype=np.int64), cols, vals, indptr[1:])
    np.cumsum(indptr, out=indptr)
    nnz = int(indptr[-1])
    int32_max = np.iinfo(np.int32).max
    index_dtype = np.int32 if max(n_features, nnz) <= int32_max else np.int64
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=dtype)
    pack_rows(raw_indptr, cols, vals, norm, indptr, indices, data)
    return indptr.astype(index_dtype, copy=False), indices, data

"""Process settings for a model server: how glibc malloc keeps freed memory, TF thread pools.

Why malloc: a model call allocates and frees megabytes of activations. With glibc's default
(dynamic) thresholds the freed blocks go back to the kernel after every request (heap trimming,
mmap'd chunks), so the next request page-faults them in again (what that cost per request:
README.md, Export and serve). Fixed thresholds keep the
freed memory for the next request, as tcmalloc does in TensorFlow Serving. The price is that the
process keeps its peak working set (it does not shrink after a burst).
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): blocks up to this size
# come from the heap and are reused; larger ones are still mmap'd and returned on free.
MMAP_THRESHOLD_MAX = 32 << 20
TRIM_THRESHOLD = 512 << 20


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD_MAX,
                        trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Makes glibc malloc keep freed memory for reuse (see the module docstring).

    Both thresholds are set together: setting only the trim threshold turns off the dynamic mmap
    threshold and every block over 128 KB is mmap'd and faulted in afresh (far more page faults). -> True when applied, False where the C library is not glibc (nothing changes)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
                and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def set_tf_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TensorFlow's thread pool sizes (0: TF's default, one thread per core), as TF Serving's
    --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism. Must run before
    TensorFlow executes its first op."""
    import tensorflow as tf
    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))

/* The inner loop of multi-index hashing (mih.py), compiled.
 *
 * For each query: every probed chunk value's rows are collected from the CSR tables, then each
 * candidate's 256-bit code is compared with the query's. At 10 million codes that is about 10,000
 * candidates per query, each a 32-byte read at random from a 320 MB array: numpy spent ~70 ns a
 * candidate on the gather alone, one indexing pass at a time. Here the code of the candidate
 * AHEAD places on is requested while the current one is compared, so the cache misses overlap.
 *
 * search(codes, offsets, rows, width, masks, values, queries, radius) -> bytes
 *   codes:   N x 4 uint64 (C order)          offsets: 12 buffers of uint32 (2**21 + 1 each)
 *   rows:    12 buffers of N x width bytes   width:   3 or 4 (little-endian row numbers)
 *   masks:   12 buffers of uint32 (the flips to probe per chunk; may be empty)
 *   values:  Q x 12 uint32 (each query's chunk values)   queries: Q x 4 uint64
 * Returns (query, row, distance) int64 triples of every candidate within ``radius``; a code near
 * in several chunks appears once per chunk (the caller removes repeats).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#define CHUNKS 12
#define AHEAD 32 /* candidates read ahead of the one compared */

typedef struct {
    Py_buffer view[CHUNKS];
    int held;
} Buffers;

static void release(Buffers *buffers) {
    for (int i = 0; i < buffers->held; i++) PyBuffer_Release(&buffers->view[i]);
    buffers->held = 0;
}

/* Borrow a read-only, C-contiguous buffer of each of the CHUNKS items of ``sequence``. */
static int borrow(PyObject *sequence, Buffers *buffers, const char *what) {
    buffers->held = 0;
    PyObject *items = PySequence_Fast(sequence, what);
    if (items == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(items) != CHUNKS) {
        Py_DECREF(items);
        PyErr_Format(PyExc_ValueError, "%s: expected %d arrays", what, CHUNKS);
        return -1;
    }
    for (int i = 0; i < CHUNKS; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if (PyObject_GetBuffer(item, &buffers->view[i], PyBUF_C_CONTIGUOUS) < 0) {
            Py_DECREF(items);
            release(buffers);
            return -1;
        }
        buffers->held++;
    }
    Py_DECREF(items);
    return 0;
}

static inline int distance(const uint64_t *a, const uint64_t *b) {
    return __builtin_popcountll(a[0] ^ b[0]) + __builtin_popcountll(a[1] ^ b[1]) +
           __builtin_popcountll(a[2] ^ b[2]) + __builtin_popcountll(a[3] ^ b[3]);
}

/* x86-64 has had a popcnt instruction since 2008, but the baseline the compiler targets does not
 * include it, and without it each count is a library call: build both, pick at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WITH_POPCNT __attribute__((target_clones("popcnt", "default")))
#else
#define WITH_POPCNT
#endif

typedef struct {
    int64_t *items;
    size_t length, capacity;
} Growing;

static int grow(Growing *array, size_t needed) {
    if (needed <= array->capacity) return 0;
    size_t capacity = array->capacity ? array->capacity : 4096;
    while (capacity < needed) capacity *= 2;
    int64_t *items = realloc(array->items, capacity * sizeof(int64_t));
    if (items == NULL) return -1;
    array->items = items;
    array->capacity = capacity;
    return 0;
}

/* Collect and compare; 0, or -1 when out of memory (nothing is raised: the GIL is not held). */
WITH_POPCNT
static int scan(const uint64_t *codes, size_t count, Buffers *offsets, Buffers *rows, int width,
                Buffers *masks, const uint32_t *values, const uint64_t *queries, Py_ssize_t total,
                int radius, Growing *found) {
    Growing candidates = {NULL, 0, 0};
    for (Py_ssize_t query = 0; query < total; query++) {
        candidates.length = 0;
        for (int chunk = 0; chunk < CHUNKS; chunk++) {
            const uint32_t *offset = offsets->view[chunk].buf;
            size_t values_in_table = offsets->view[chunk].len / sizeof(uint32_t) - 1;
            const uint8_t *row_bytes = rows->view[chunk].buf;
            size_t rows_in_table = rows->view[chunk].len / width;
            const uint32_t *flips = masks->view[chunk].buf;
            size_t probes = masks->view[chunk].len / sizeof(uint32_t);
            uint32_t value = values[query * CHUNKS + chunk];
            for (size_t probe = 0; probe < probes; probe++) {
                uint32_t probed = value ^ flips[probe];
                if (probed >= values_in_table) continue;
                uint32_t start = offset[probed], end = offset[probed + 1];
                if (start >= end || end > rows_in_table) continue; /* empty, or a damaged table */
                if (grow(&candidates, candidates.length + (end - start)) < 0) goto failed;
                const uint8_t *packed = row_bytes + (size_t)start * width;
                int64_t *into = candidates.items + candidates.length;
                candidates.length += end - start;
                if (width == 3) {
                    for (uint32_t at = start; at < end; at++, packed += 3) {
                        *into++ = packed[0] | (int64_t)packed[1] << 8 | (int64_t)packed[2] << 16;
                    }
                } else {
                    for (uint32_t at = start; at < end; at++, packed += width) {
                        int64_t row = 0;
                        for (int byte = 0; byte < width; byte++) row |= (int64_t)packed[byte] << (8 * byte);
                        *into++ = row;
                    }
                }
            }
        }
        const uint64_t *wanted = queries + query * 4;
        for (size_t i = 0; i < candidates.length; i++) {
            if (i + AHEAD < candidates.length) {
                __builtin_prefetch(codes + candidates.items[i + AHEAD] * 4);
            }
            int64_t row = candidates.items[i];
            if ((size_t)row >= count) continue;
            int bits = distance(codes + row * 4, wanted);
            if (bits <= radius) {
                if (grow(found, found->length + 3) < 0) goto failed;
                found->items[found->length++] = query;
                found->items[found->length++] = row;
                found->items[found->length++] = bits;
            }
        }
    }
    free(candidates.items);
    return 0;
failed:
    free(candidates.items);
    return -1;
}

static PyObject *search(PyObject *self, PyObject *args) {
    PyObject *codes_object, *offsets_object, *rows_object, *masks_object, *values_object,
        *queries_object;
    int width, radius;
    if (!PyArg_ParseTuple(args, "OOOiOOOi", &codes_object, &offsets_object, &rows_object, &width,
                          &masks_object, &values_object, &queries_object, &radius)) {
        return NULL;
    }
    if (width < 1 || width > 8) {
        PyErr_SetString(PyExc_ValueError, "width: 1 to 8 bytes");
        return NULL;
    }
    Py_buffer codes, values, queries;
    Buffers offsets = {.held = 0}, rows = {.held = 0}, masks = {.held = 0};
    PyObject *result = NULL;
    int have_codes = 0, have_values = 0, have_queries = 0;
    if (PyObject_GetBuffer(codes_object, &codes, PyBUF_C_CONTIGUOUS) < 0) goto done;
    have_codes = 1;
    if (PyObject_GetBuffer(values_object, &values, PyBUF_C_CONTIGUOUS) < 0) goto done;
    have_values = 1;
    if (PyObject_GetBuffer(queries_object, &queries, PyBUF_C_CONTIGUOUS) < 0) goto done;
    have_queries = 1;
    if (borrow(offsets_object, &offsets, "offsets") < 0) goto done;
    if (borrow(rows_object, &rows, "rows") < 0) goto done;
    if (borrow(masks_object, &masks, "masks") < 0) goto done;
    Py_ssize_t total = queries.len / 32;
    if (values.len != total * CHUNKS * (Py_ssize_t)sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "values: one row of 12 uint32 per query");
        goto done;
    }
    Growing found = {NULL, 0, 0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = scan(codes.buf, codes.len / 32, &offsets, &rows, width, &masks, values.buf,
                  queries.buf, total, radius, &found);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
    } else {
        result = PyBytes_FromStringAndSize((const char *)found.items,
                                           (Py_ssize_t)(found.length * sizeof(int64_t)));
    }
    free(found.items);
done:
    release(&offsets);
    release(&rows);
    release(&masks);
    if (have_codes) PyBuffer_Release(&codes);
    if (have_values) PyBuffer_Release(&values);
    if (have_queries) PyBuffer_Release(&queries);
    return result;
}

static PyMethodDef methods[] = {
    {"search", search, METH_VARARGS,
     "(query, row, distance) int64 triples of every candidate within the radius, as bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mih", NULL, -1, methods};

PyMODINIT_FUNC PyInit__mih(void) { return PyModule_Create(&module); }

//go:build cgo

// Interface of bq.c, the C half of the oneDNN engine. Functions that can fail
// return NULL on success or a malloc'd message for the caller to free.
#ifndef BERTQ_ONEDNN_BQ_H
#define BERTQ_ONEDNN_BQ_H

#include <stdint.h>

typedef struct bq_model bq_model;
typedef struct bq_runner bq_runner;

char *bq_probe(void);
void bq_set_simd(int on);

char *bq_model_create(int B, int S, int H, int NH, int I, int L, int bf16, int act, float eps,
                      bq_model **out);
char *bq_model_set_matrix(bq_model *m, int l, int kind, const void *src);
void bq_model_set_vector(bq_model *m, int l, int which, const float *v);
char *bq_model_set_pooler(bq_model *m, const float *w, const float *b);
const char *bq_model_describe(bq_model *m);
void bq_model_destroy(bq_model *m);

char *bq_runner_create(bq_model *m, bq_runner **out);
float *bq_runner_x(bq_runner *r);
float *bq_runner_mask(bq_runner *r);
float *bq_runner_pooled(bq_runner *r);
void bq_runner_embed(bq_runner *r, const float *word, const float *pos, const float *type,
                     const float *gamma, const float *beta, const int32_t *ids, const int32_t *types);
char *bq_runner_forward(bq_runner *r, int mode);
void bq_runner_destroy(bq_runner *r);

#endif

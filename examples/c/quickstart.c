#include <stdio.h>

#include "edgetune.h"

/* Ends the program with the library's one-line message when a call fails. */
#define TRY(call)                                    \
  do {                                               \
    if ((call) != ET_OK) {                           \
      fprintf(stderr, "error: %s\n", et_last_error()); \
      return 2;                                      \
    }                                                \
  } while (0)

/* Called after every step; returning non-zero would stop the run (ET_STOPPED, nothing written). */
static int progress(void *user, size_t step, size_t total, float loss, float accuracy) {
  (void)user;
  printf("step %zu/%zu: loss %.4f, accuracy %.2f\n", step, total, loss, accuracy);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: quickstart MODEL.onnx DATA_SPEC OUT.onnx\n");
    return 2;
  }
  printf("edgetune %s\n", et_version());

  /* Finetune: ZNorm and Adam (the defaults), 10 steps of 8 images, written to OUT.onnx. */
  et_train_config config = et_train_config_default();
  config.lr = 1e-3f;
  TRY(et_finetune(argv[1], argv[2], argv[3], &config, 10, 8, progress, NULL));

  /* Run the finetuned model from its file on one (blank) image. */
  et_session *session = NULL;
  TRY(et_session_new(argv[3], 0, &session));
  static float image[1 * 3 * 32 * 32];
  const size_t shape[4] = {1, 3, 32, 32};
  et_tensor *logits = NULL;
  TRY(et_session_run(session, image, shape, 4, &logits));
  const float *scores = NULL;
  size_t classes = 0;
  TRY(et_tensor_data(logits, &scores, &classes));
  size_t best = 0;
  for (size_t k = 1; k < classes; k++)
    if (scores[k] > scores[best]) best = k;
  printf("%s: class %zu of %zu\n", argv[3], best, classes);

  et_tensor_free(logits);
  et_session_free(session);
  return 0;
}

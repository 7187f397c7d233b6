/*
 * fuzz_env: the .env loader (spec 2.1, runtime-sandbox-server.env(5)) on
 * arbitrary file text: every line parsed, every key applied and checked,
 * the type registry built. Property: what cfg_print writes is read back
 * line by line.
 */
#include "../../src/config.c"

#include <stdint.h>

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Quiet logs: warnings about unknown keys are expected. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_env", LOG_LEVEL_CRIT);
	return 0;
}

/* Every printed line must parse as one KEY=VALUE line. */
static void
fuzz_check_print(struct cfg_ctx *ctx, const struct cfg *cfg)
{
	char *text = NULL, *line, *next, *name, *value, *cause;
	size_t len = 0;
	FILE *fp;

	if ((fp = open_memstream(&text, &len)) == NULL)
		abort();
	cfg_print(cfg, fp);
	fclose(fp);
	for (line = text; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (cfg_parse_line(ctx, line, &name, &value, &cause) != 1) {
			fprintf(
			    stderr, "printed line does not parse: %s\n", line);
			abort();
		}
		free(name);
		free(value);
	}
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_priv *priv;
	struct cfg_ctx ctx;
	char *buf;
	size_t i;

	if (size > CFG_MAX_FILE)
		return 0;
	memset(&ctx, 0, sizeof ctx);
	TAILQ_INIT(&ctx.errs);
	strcpy(ctx.cwd, "/fuzz/cwd");
	ctx.file = "fuzz.env";
	ctx.override = 1;
	buf = xmalloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	cfg_load_text(&ctx, ctx.file, buf, size);
	cfg_merge(&ctx);
	priv = xcalloc(1, sizeof *priv);
	for (i = 0; i < CFG_NKEYS; i++)
		cfg_apply(&ctx, priv, i);
	cfg_cross_check(&ctx, priv);
	cfg_build_types(&ctx, &priv->pub, NULL);
	if (ctx.nerrs == 0)
		fuzz_check_print(&ctx, &priv->pub);
	cfg_ctx_clear(&ctx);
	cfg_free(&priv->pub);
	return 0;
}

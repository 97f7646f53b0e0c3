/* commands.h: one declaration per subcommand (one file each in cmd/). */
#ifndef TQ_COMMANDS_H
#define TQ_COMMANDS_H

int cmd_synth(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_dequantize(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_entropy(int argc, char **argv);
int cmd_sensitivity(int argc, char **argv);
int cmd_mixed_schedule(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_memory(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_generate(int argc, char **argv);

#endif

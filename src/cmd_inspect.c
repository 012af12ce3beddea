/* edgec inspect: placeholder until its owner fills it in. */
#include "cli.h"

int ec_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return ec_cli_usage_error("inspect", "not implemented yet");
}

/* edgec convert: placeholder until its owner fills it in. */
#include "cli.h"

int ec_cmd_convert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return ec_cli_usage_error("convert", "not implemented yet");
}

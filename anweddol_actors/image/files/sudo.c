/*
 * A minimal setuid "sudo" stand-in for the anweddol dev container image.
 *
 * Real sudo (with PAM and its plugins) would be most of the image. The container contract
 * only needs one thing: the endpoint user may run
 *     sudo /bin/anweddol_container_setup.sh USERNAME PORT   (password on stdin)
 * (or the original's USERNAME PASSWORD PORT) as root; stdin is passed through untouched. So this allows exactly that and nothing else: caller must be the endpoint uid,
 * argv[1] must be the setup script, the environment is replaced by a fixed one.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <grp.h>

#ifndef ENDPOINT_UID
#define ENDPOINT_UID 1000
#endif
#define SETUP_SCRIPT "/bin/anweddol_container_setup.sh"

int main(int argc, char **argv)
{
    char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C", NULL};
    char *args[8];
    int i;

    if (getuid() != ENDPOINT_UID) {
        fprintf(stderr, "sudo: permission denied\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], SETUP_SCRIPT) != 0) {
        fprintf(stderr, "sudo: only %s may be run\n", SETUP_SCRIPT);
        return 1;
    }
    if (argc > 6) {
        fprintf(stderr, "sudo: too many arguments\n");
        return 1;
    }
    if (setgroups(0, NULL) != 0 || setgid(0) != 0 || setuid(0) != 0) {
        perror("sudo");
        return 1;
    }
    args[0] = "/bin/sh";
    for (i = 1; i < argc; i++)
        args[i] = argv[i];
    args[argc] = NULL;
    execve("/bin/sh", args, env);
    perror("sudo: execve");
    return 1;
}

/*
 * node-sdk pause: the process that holds a pod sandbox's namespaces open.
 *
 * It sleeps until asked to stop, exits 0 on SIGINT or SIGTERM, and reaps any
 * zombie it inherits (it is PID 1 of the pod's PID namespace when that is shared).
 * Built statically by scripts/images.sh, so the image needs nothing else.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction sa;

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        static const char msg[] = "node-sdk pause 3.10\n";
        return write(STDOUT_FILENO, msg, sizeof msg - 1) < 0;
    }
    if (getpid() != 1) {
        static const char warn[] = "pause: warning: not running as PID 1\n";
        if (write(STDERR_FILENO, warn, sizeof warn - 1) < 0) {
        }
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    for (;;) {
        pause();
    }
}

/*
 * holder: ESTABLISHED sockets held by many processes, for bench/processes.sh.
 *
 *   holder serve ADDR PORT MAX SECONDS
 *       listen on ADDR:PORT, accept up to MAX connections and hold them
 *       (never read, never close) until SIGTERM or SECONDS have passed
 *   holder connect ADDR PORT NPORTS PROCS PER_PROC SECONDS
 *       fork PROCS children; child i opens PER_PROC connections to
 *       ADDR:PORT … ADDR:PORT+NPORTS-1 (round robin) and holds them; the
 *       parent prints "ready" once every child has connected, then waits
 *       for SIGTERM or SECONDS and kills its children by PID
 *
 * Every process ends by SECONDS (alarm), and children die with their parent
 * (PR_SET_PDEATHSIG). Exit status 0 when ready, 1 on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static struct sockaddr_in address(const char *addr, int port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "holder: bad address %s\n", addr);
        exit(1);
    }
    return sa;
}

static void handle_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
}

static int serve(const char *addr, int port, long max, int seconds) {
    struct sockaddr_in sa = address(addr, port);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "holder: cannot listen on %s:%d: %s\n", addr, port, strerror(errno));
        return 1;
    }
    handle_signals();
    alarm((unsigned)seconds);
    printf("ready\n");
    fflush(stdout);
    for (long held = 0; !stop;) {
        if (held >= max) {
            pause();
            continue;
        }
        int c = accept(fd, NULL, NULL);
        if (c >= 0)
            held++;
        else if (errno != EINTR) {
            fprintf(stderr, "holder: accept on port %d: %s\n", port, strerror(errno));
            pause();
        }
    }
    return 0;
}

static int connect_many(const char *addr, int port, int nports, int procs, int per_proc, int seconds) {
    int ready[2];
    pid_t *children = calloc((size_t)procs, sizeof *children);
    if (!children || pipe(ready) < 0)
        return 1;
    handle_signals();
    alarm((unsigned)seconds);
    pid_t parent = getpid();
    int started = 0, failed = 0;
    for (int i = 0; i < procs && !stop; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "holder: fork: %s\n", strerror(errno));
            failed = 1;
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            close(ready[0]);
            char ok = 1;
            for (int k = 0; k < per_proc; k++) {
                struct sockaddr_in sa = address(addr, port + (i * per_proc + k) % nports);
                int fd = socket(AF_INET, SOCK_STREAM, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                    fprintf(stderr, "holder: child %d, connection %d: %s\n", i, k, strerror(errno));
                    ok = 0;
                    break;
                }
            }
            if (write(ready[1], &ok, 1) != 1)
                _exit(1);
            while (1)
                pause(); /* SIGTERM, SIGKILL or the parent's death end it */
        }
        children[started++] = pid;
    }
    close(ready[1]);
    for (int i = 0; i < started && !stop; i++) {
        char ok = 0;
        ssize_t n = read(ready[0], &ok, 1);
        if (n < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (n != 1 || !ok) {
            failed = 1;
            break;
        }
    }
    if (!failed && !stop) {
        printf("ready\n");
        fflush(stdout);
        while (!stop)
            pause();
    }
    for (int i = 0; i < started; i++)
        kill(children[i], SIGKILL);
    for (int i = 0; i < started; i++)
        waitpid(children[i], NULL, 0);
    return failed;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 6 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], atoi(argv[3]), atol(argv[4]), atoi(argv[5]));
    if (argc == 8 && strcmp(argv[1], "connect") == 0)
        return connect_many(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
    fprintf(stderr, "usage: holder serve ADDR PORT MAX SECONDS\n"
                    "       holder connect ADDR PORT NPORTS PROCS PER_PROC SECONDS\n");
    return 2;
}

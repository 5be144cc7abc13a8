/* The machine's floor under the warm check (issue 12): the cost of the
 * stats alone, with nothing of kolosal's around them. Reads paths (one a
 * line) on stdin, groups them by directory, opens each directory O_PATH
 * and fstatat()s every entry relative to it, as the launcher's warm check
 * does; on 1 thread, then split over 2 threads (created inside the timed
 * region, as the launcher's are). Prints the minimum and median of ROUNDS
 * rounds for each, in microseconds.
 * Usage: statfloor [ROUNDS [1|2]] < paths   (1 or 2: only that many
 * threads; with ROUNDS 1 in a new process each time, the first and only
 * round sees the process as cold as the launcher's).
 * Build: cc -O2 -pthread statfloor.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char **dirs, **names;
static int n;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

struct span { int a, b; long ok; };

static void *check(void *p) {
    struct span *s = p;
    int fd = -1;
    const char *cur = NULL;
    struct stat st;
    for (int i = s->a; i < s->b; i++) {
        if (!cur || strcmp(cur, dirs[i]) != 0) {
            if (fd >= 0) close(fd);
            fd = open(dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
            cur = dirs[i];
        }
        if (fstatat(fd, names[i], &st, 0) == 0) s->ok++;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    int only = argc > 2 ? atoi(argv[2]) : 0;
    if (rounds < 1) rounds = 1;
    size_t cap = 4096;
    dirs = malloc(cap * sizeof *dirs);
    names = malloc(cap * sizeof *names);
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        char *slash = strrchr(line, '/');
        if (!slash) continue;
        if ((size_t)n == cap) {
            cap *= 2;
            dirs = realloc(dirs, cap * sizeof *dirs);
            names = realloc(names, cap * sizeof *names);
        }
        *slash = 0;
        dirs[n] = strdup(*line ? line : "/");
        names[n] = strdup(slash + 1);
        n++;
    }
    double one[rounds], two[rounds];
    long ok = 0;
    for (int r = 0; r < rounds; r++) {
        one[r] = two[r] = 0;
        if (only != 2) {
            struct span s = {0, n, 0};
            double t0 = now_us();
            check(&s);
            one[r] = now_us() - t0;
            ok = s.ok;
        }
        if (only != 1) {
            struct span h[2] = {{0, n / 2, 0}, {n / 2, n, 0}};
            pthread_t th;
            double t0 = now_us();
            pthread_create(&th, NULL, check, &h[1]);
            check(&h[0]);
            pthread_join(th, NULL);
            two[r] = now_us() - t0;
            ok = h[0].ok + h[1].ok;
        }
    }
    qsort(one, rounds, sizeof *one, cmp);
    qsort(two, rounds, sizeof *two, cmp);
    printf("%d paths (%ld exist), %d rounds: 1 thread min %.0f us median %.0f us; "
           "2 threads min %.0f us median %.0f us\n",
           n, ok, rounds, one[0], one[rounds / 2], two[0], two[rounds / 2]);
    return 0;
}

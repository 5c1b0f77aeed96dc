/* test_claimer.c - a claim names one process incarnation: a live worker
 * is alive; the same pid under another start time or boot (pid reuse, the
 * lost uploads of a whole-node crash), a zombie, a process of another name,
 * a gone pid are dead. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/claimer.h"

/* A child that sleeps until killed, named name (prctl) unless NULL. */
static pid_t spawn(const char *name)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (name != NULL)
            prctl(PR_SET_NAME, name, 0, 0, 0);
        for (;;)
            pause();
    }
    /* wait until the name shows, so the child is past prctl */
    for (int i = 0; i < 2000; i++) {
        char state, comm[32] = "";
        unsigned long long start;
        if (claimer_proc_stat(pid, &state, &start, comm, sizeof comm) == 0 &&
            (name == NULL || strcmp(comm, name) == 0))
            return pid;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("child %d never showed its name", (int)pid);
    return -1;
}

static void claim_of(pid_t pid, const char *boot_override, long long start_delta, char *out,
                     size_t outlen)
{
    char self[CLAIMER_MAX], state;
    unsigned long long start;
    ck_assert_int_eq(claimer_self("nodeA", self, sizeof self), 0);
    ck_assert_int_eq(claimer_proc_stat(pid, &state, &start, NULL, 0), 0);
    char boot[16];
    snprintf(boot, sizeof boot, "%.8s", strchr(self, ':') + 1);
    snprintf(out, outlen, "nodeA:%s.%llu:%ld", boot_override ? boot_override : boot,
             start + (unsigned long long)start_delta, (long)pid);
}

static char self[CLAIMER_MAX];

static void setup(void)
{
    ck_assert_int_eq(claimer_self("nodeA", self, sizeof self), 0);
}

START_TEST(test_self_format)
{
    char want[64];
    snprintf(want, sizeof want, ":%ld", (long)getpid());
    ck_assert_msg(strncmp(self, "nodeA:", 6) == 0, "%s", self);
    ck_assert(strlen(self) > strlen(want) && strcmp(self + strlen(self) - strlen(want), want) == 0);
    const char *inc = self + 6;
    ck_assert_uint_eq(strspn(inc, "0123456789abcdef"), 8);
    ck_assert_int_eq(inc[8], '.');
    ck_assert_uint_gt(strspn(inc + 9, "0123456789"), 0);
    ck_assert(claimer_alive_here(self, self));
    ck_assert(claimer_same_node(self, "nodeA:1"));
    ck_assert(!claimer_same_node(self, "nodeAB:1"));
    ck_assert(!claimer_same_node(self, "node:1"));
    ck_assert(!claimer_same_node(self, "nodeA"));
}
END_TEST

/* The bug this module fixes: a dead worker's pid now belongs to another,
 * live dripd-pipeline. */
START_TEST(test_reused_pid_is_dead)
{
    pid_t other = spawn("dripd-pipeline");
    char claim[CLAIMER_MAX];
    claim_of(other, NULL, 0, claim, sizeof claim);
    ck_assert_msg(claimer_alive_here(self, claim), "%s", claim); /* that very process */
    claim_of(other, NULL, -1, claim, sizeof claim);
    ck_assert_msg(!claimer_alive_here(self, claim), "%s", claim); /* an earlier one */
    claim_of(other, NULL, 1000, claim, sizeof claim);
    ck_assert_msg(!claimer_alive_here(self, claim), "%s", claim);
    claim_of(other, "0badb007", 0, claim, sizeof claim); /* the same, before a reboot */
    ck_assert_msg(!claimer_alive_here(self, claim), "%s", claim);
    /* an old-format claim says no more than the pid */
    snprintf(claim, sizeof claim, "nodeA:%ld", (long)other);
    ck_assert(claimer_alive_here(self, claim));
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
}
END_TEST

START_TEST(test_zombie_is_dead)
{
    pid_t z = spawn("dripd-pipeline");
    char claim[CLAIMER_MAX], legacy[64];
    claim_of(z, NULL, 0, claim, sizeof claim);
    snprintf(legacy, sizeof legacy, "nodeA:%ld", (long)z);
    ck_assert(claimer_alive_here(self, claim));
    kill(z, SIGKILL);
    char state = 'R';
    for (int i = 0; i < 2000 && state != 'Z'; i++) {
        unsigned long long start;
        ck_assert_int_eq(claimer_proc_stat(z, &state, &start, NULL, 0), 0);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(state, 'Z'); /* not reaped: kill(pid, 0) still finds it */
    ck_assert_int_eq(kill(z, 0), 0);
    ck_assert(!claimer_alive_here(self, claim));
    ck_assert(!claimer_alive_here(self, legacy));
    waitpid(z, NULL, 0);
    ck_assert(!claimer_alive_here(self, claim)); /* gone */
    ck_assert(!claimer_alive_here(self, legacy));
    char st;
    unsigned long long start;
    ck_assert_int_eq(claimer_proc_stat(z, &st, &start, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(test_other_name_is_dead)
{
    pid_t p = spawn("not-a-worker");
    char claim[CLAIMER_MAX], legacy[64];
    claim_of(p, NULL, 0, claim, sizeof claim);
    snprintf(legacy, sizeof legacy, "nodeA:%ld", (long)p);
    ck_assert(!claimer_alive_here(self, claim));
    ck_assert(!claimer_alive_here(self, legacy));
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
}
END_TEST

START_TEST(test_malformed_and_own_pid)
{
    char legacy[64];
    snprintf(legacy, sizeof legacy, "nodeA:%ld", (long)getpid());
    ck_assert(!claimer_alive_here(self, legacy)); /* this process claims as self only */
    const char *bad[] = {"nodeA:",
                         "nodeA:0",
                         "nodeA:-5",
                         "nodeA:12x",
                         "nodeA:abc.1:12",
                         "nodeA:0123456.1:12",
                         "nodeA:01234567.:12",
                         "nodeA:01234567-1:12"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!claimer_alive_here(self, bad[i]), "%s", bad[i]);
}
END_TEST

START_TEST(test_proc_stat_odd_names)
{
    pid_t p = spawn("a) b (c) d");
    char state, comm[32];
    unsigned long long start, mine;
    ck_assert_int_eq(claimer_proc_stat(p, &state, &start, comm, sizeof comm), 0);
    ck_assert_str_eq(comm, "a) b (c) d");
    ck_assert(state == 'S' || state == 'R');
    ck_assert_int_eq(claimer_proc_stat(getpid(), &state, &mine, NULL, 0), 0);
    ck_assert(start >= mine); /* the child started after this process */
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("claimer");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_self_format);
    tcase_add_test(tc, test_reused_pid_is_dead);
    tcase_add_test(tc, test_zombie_is_dead);
    tcase_add_test(tc, test_other_name_is_dead);
    tcase_add_test(tc, test_malformed_and_own_pid);
    tcase_add_test(tc, test_proc_stat_odd_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

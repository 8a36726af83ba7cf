/* Preloaded before libfaketime in chaos/run's clock faults: timers go straight to the kernel.
 *
 * libfaketime 0.9.10 shifts the deadline of every absolute timerfd by the fake offset, also on
 * CLOCK_BOOTTIME, which FAKETIME_DONT_FAKE_MONOTONIC does not cover. Swift's global executor
 * arms its ContinuousClock sleeps on a CLOCK_BOOTTIME timerfd, so a faked 30 s step back of
 * the wall clock stalled every Task.sleep of the replica for 30 s: a fault no real host has
 * (only the wall clock steps there). With this shim only the wall clock is fake.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

int timerfd_settime(int fd, int flags, const struct itimerspec *new_value, struct itimerspec *old_value) {
    return (int)syscall(SYS_timerfd_settime, fd, flags, new_value, old_value);
}

int timerfd_gettime(int fd, struct itimerspec *curr_value) {
    return (int)syscall(SYS_timerfd_gettime, fd, curr_value);
}

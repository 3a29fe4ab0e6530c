/* Minimal C test harness: CHECK records a failure and goes on; main returns
 * TEST_SUMMARY() which prints "N passed, N failed" and the exit status. */
#ifndef FMD_TEST_H
#define FMD_TEST_H
#include <math.h>
#include <stdio.h>
static int test_passed, test_failed;
#define CHECK(cond) do { if (cond) test_passed++; else { test_failed++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); \
    if (fabs(_a - _b) <= (tol) * (1 + fabs(_b))) test_passed++; else { test_failed++; \
    fprintf(stderr, "%s:%d: %s = %.8g, expected %.8g\n", __FILE__, __LINE__, #a, _a, _b); } } while (0)
#define TEST_SUMMARY() (printf("%d passed, %d failed\n", test_passed, test_failed), test_failed ? 1 : 0)
#endif

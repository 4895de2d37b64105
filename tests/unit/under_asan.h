/* UNDER_ASAN: 1 when the test is built with AddressSanitizer (gcc's __SANITIZE_ADDRESS__ or clang's
 * __has_feature), for tests whose memory or timing expectations differ under it. */
#ifndef KAILASH_TEST_UNDER_ASAN_H
#define KAILASH_TEST_UNDER_ASAN_H
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#endif

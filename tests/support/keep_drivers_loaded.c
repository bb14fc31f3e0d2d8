/* tests/support/keep_drivers_loaded.c — linked only into the sanitizer
 * builds (make asan). The Vulkan and OpenCL loaders dlclose() their drivers
 * at shutdown; LeakSanitizer then cannot name the module that made a
 * driver-internal allocation, so the suppressions in tests/lsan.supp (which
 * match driver libraries by name) cannot apply and every run would report
 * the drivers' own leaks as ours. Making dlclose a no-op keeps the drivers
 * mapped until exit, as they would be in any long-running process, so the
 * report names them. qvac's own allocations are unaffected. */
int dlclose(void *handle);

int dlclose(void *handle)
{
    (void)handle;
    return 0;
}

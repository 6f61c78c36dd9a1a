/*
 * periscope plugin API: what marks it. libpscore is built with hidden
 * visibility, so a plugin can reach exactly the functions declared PS_API in
 * these headers and nothing else of the daemon.
 */
#ifndef PERISCOPE_API_H
#define PERISCOPE_API_H

#define PS_API __attribute__((visibility("default")))

#endif

/*
 * hearth.h - the public interface of libhearth.
 *
 * This is the only installed header. The client library that talks to
 * hearthd over its Unix socket is declared here as it is built; for now
 * it carries the version of the protocol and the package.
 */
#ifndef HEARTH_H
#define HEARTH_H

#define HEARTH_VERSION_MAJOR	0
#define HEARTH_VERSION_MINOR	1
#define HEARTH_VERSION_PATCH	0
#define HEARTH_VERSION_STRING	"0.1.0"

#endif /* HEARTH_H */

// private_directory.hpp: where a user's local sockets live, so that no other user can reach them.
//
// Local mode's pool and the local service listen on ipc sockets. An abstract socket name has no
// permissions (any local user may connect, or bind the name first and receive what was meant for
// the owner), so fanout uses socket files inside a directory that only its user can enter: the
// kernel then refuses every other uid's connect() (root excepted, which is trusted anyway).
//
// The directory is $XDG_RUNTIME_DIR/fanout when XDG_RUNTIME_DIR is set (systemd's per-user
// tmpfs), else ${TMPDIR:-/tmp}/fanout-UID. It is created with mode 0700; one that exists is used
// only when it is a real directory (not a symbolic link) owned by this user with no access for
// group or others. Anything else is refused, never repaired or worked around silently: another
// user may have planted it, as tmux and ssh-agent also assume.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace fanout::sys {

// This user's private runtime directory, created when missing. Throws std::runtime_error saying
// what is wrong with it (and how to fix it) when it cannot be used.
std::filesystem::path private_runtime_directory();

// An "ipc://" endpoint for the socket file `name` in the private runtime directory. Throws
// std::runtime_error when the path is longer than a socket address can hold.
std::string private_ipc_endpoint(const std::string& name);

// Removes the socket files named PREFIX* in the private runtime directory that nobody listens on
// and that are over a minute old: what local pools of killed programs left behind (a pool's own
// socket goes when it closes).
void remove_stale_sockets(const std::string& prefix) noexcept;

}  // namespace fanout::sys

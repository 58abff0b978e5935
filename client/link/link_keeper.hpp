// link_keeper.hpp: one thread per process that heartbeats for batch links whose owner's thread is
// away running the caller's callbacks (BatchLink::keep_alive): a process-driver batch with
// callbacks, for as long as it runs, and a remote pool's session (remote_session.cpp), for as long
// as it lives. It wakes only while a link is watched, and then every kTick; a link's heartbeat
// still goes at most every kHeartbeatInterval.
//
// After fork() the child has no keeper thread: the first watch() there starts one. fork() takes
// the keeper's lock first (pthread_atfork), so that no child starts with it held by a thread it
// does not have.
#pragma once

namespace fanout::link {

class BatchLink;

namespace keeper {

// From now until unwatch(), `link` is offered a heartbeat (BatchLink::beat_if_lent) every tick.
void watch(BatchLink& link);
// After it returns, the keeper no longer touches `link`.
void unwatch(BatchLink& link) noexcept;

}  // namespace keeper
}  // namespace fanout::link

// A communicator that records every operation in a flight recorder and holds each wait under the
// watchdog, around any backend (MPI, NCCL). Groups split from it are watched too, labelled by
// set_label() (the process grid names its groups tp, dp, pp, embedding).
//
// Each operation's wait is a watchdog section named "<op>(<group>)", so its deadline is learned
// from that collective's own durations, and the time blocked in waits is summed in the recorder
// (a step's compute time is its duration minus that).
#pragma once

#include <memory>
#include <string>

#include "tessera/communicator.h"
#include "tessera/flight_recorder.h"
#include "tessera/watchdog.h"

namespace tessera {

// inner: the world communicator (rank r of it is world rank r). recorder and watchdog outlive the
// result and every group split from it; watchdog may be null.
std::unique_ptr<Communicator> watch_communicator(Context& ctx, std::unique_ptr<Communicator> inner,
                                                 FlightRecorder& recorder, Watchdog* watchdog);

}  // namespace tessera

// Outputs checked before any work: a run must not train for hours and then fail on a path it
// cannot write (a bad --export at the end, a read-only --checkpoint-dir at the first save).
//
// Each check throws a config error naming the flag ("--log", or where the path came from) and the path. Nothing is left behind except a
// directory that did not exist (created, as the program would create it later).
#pragma once

#include <cstdint>
#include <string>

namespace tessera::program {

// A file the program will create, replace or append to: not a directory, and its directory exists
// and takes new files (a probe file is created and removed).
void check_output_file(const std::string& flag, const std::string& path);

// A log file (MetricsLog), whose missing directory is created when it is opened (a log beside
// checkpoints that do not exist yet): as check_output_file, except that the directory need only be
// creatable (its nearest existing ancestor a directory that takes new files). Creates nothing.
void check_log_file(const std::string& flag, const std::string& path);

// A directory the program will write into: created if missing (with its parents), a directory,
// and it takes new files; with bytes_needed > 0, its file system has that much free space.
void check_output_dir(const std::string& flag, const std::string& path, uint64_t bytes_needed = 0);

// A directory the program will create later (it writes into it at the end): the path is a
// directory if it exists, and the nearest existing ancestor takes new files. Creates nothing.
void check_creatable_dir(const std::string& flag, const std::string& path);

// "1.49 GB"
std::string format_bytes(uint64_t bytes);

}  // namespace tessera::program

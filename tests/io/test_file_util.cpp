// Input files: anything that is not a regular file is refused before it is opened, so a wrong
// path never blocks a reader (opening a FIFO for reading waits for a writer that may never come).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <string>

#include "io/file_util.h"
#include "io/io_test_util.h"
#include "tessera/data.h"
#include "tessera/safetensors.h"

using namespace tessera;
using tessera::test::error_message;
using tessera::test::TempDir;

namespace {

// Runs `read` on another thread and returns its error message. Should it block (a reader that
// opened the FIFO), a writer opens and closes the FIFO to set it free and the test fails, rather
// than the test hanging.
std::string refused_without_blocking(const std::string& fifo, const std::function<void()>& read) {
  auto reading = std::async(std::launch::async, [&] { return error_message(read); });
  if (reading.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
    reading.wait();
    FAIL("reading " << fifo << " blocked");
  }
  return reading.get();
}

}  // namespace

TEST_CASE("file_util: a FIFO given as an input file is refused without blocking", "[io]") {
  TempDir dir;
  const std::string fifo = dir.file("shard.bin");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const auto& [what, read] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"read_file", [&] { io::read_file(fifo, "text file"); }},
           {"map_file", [&] { io::map_file(fifo, "token shard"); }},
           {"token shard", [&] { TokenShard shard(fifo); }},
           {"safetensors", [&] { SafetensorsReader reader(fifo); }},
       }) {
    INFO(what);
    const std::string message = refused_without_blocking(fifo, read);
    CHECK_THAT(message, Catch::Contains("FIFO") && Catch::Contains(fifo) && Catch::Contains("not a regular file"));
  }
}

TEST_CASE("file_util: a socket, a device or a directory given as an input file is refused", "[io]") {
  TempDir dir;
  const std::string socket_path = dir.file("sock");
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  CHECK_THAT(error_message([&] { io::read_file(socket_path, "config"); }), Catch::Contains("a socket"));
  ::close(s);
  CHECK_THAT(error_message([&] { io::read_file("/dev/null", "config"); }), Catch::Contains("a character device"));
  CHECK_THAT(error_message([&] { io::map_file(dir.path(), "token shard"); }), Catch::Contains("a directory"));
  CHECK_THAT(error_message([&] { io::read_file(dir.file("missing"), "config"); }), Catch::Contains("does not exist"));
}

// The simulated board: a Verilator model of the training core, clocked flat out by a
// plain C++ loop, its byte streams moved to and from a pseudo-terminal.
//
//     harness WORKDIR IDLE_CYCLES SILENCE_MS
//
// The top module (TOP, a macro set at build time) is sim.harness_top.HarnessTop,
// the training core behind registers at every input: ports clk, rst,
// rx__valid/rx__ready/rx__payload (bytes from the host),
// tx__valid/tx__ready/tx__payload (bytes to the host) and idle (the core
// neither executes, holds nor offers a byte).  Built with BARE_TOP defined, it
// is hw.core.TrainingCore itself (the baseline bench/sim_bridge.py measures
// HarnessTop against): the same ports but idle.  Only these ports are read or
// written; the model is built without --public.
//
// Protocol with sim.verilator_bridge (Python), as the cocotb bridge's:
// * WORKDIR/device: the pty's slave path, rewritten (atomically) on each connect;
// * WORKDIR/control (FIFO, read): lines "reset", "drop", "connect", "stats",
//   "pause", "quit"; end of file (the host process died) also quits.  "pause"
//   stops the clock and the pty until the next line (so that a later "reset",
//   which first lets the core take what the host wrote, lands exactly after a
//   request however fast the core would have answered it);
// * WORKDIR/ack (FIFO, write): each line repeated once it has been carried out;
// * WORKDIR/stats.json: written on "stats" and at exit: cycles simulated, bytes
//   taken by the core and bytes sent by it, counted here.
//
// Time: while the core works (input pending, or it is executing or answering a
// request) the loop simulates in slices of SLICE cycles and looks at the pty
// between slices; a slice ends early once the core has been idle for SETTLE
// cycles.  While the core idles nothing in it changes but its idle timer, so the
// loop sleeps in poll(); after SILENCE_MS of host silence it simulates
// IDLE_CYCLES at once (once per silence), so a half-received request is
// dropped as a board would drop it.

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include "verilated.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define VTOP CAT(V, TOP)
#include STR(CAT(V, TOP).h)

// Amaranth names a stream's ports rx__valid, ...; Verilator escapes "__" in C++ as "___05F".
#define RX_VALID rx___05Fvalid
#define RX_READY rx___05Fready
#define RX_PAYLOAD rx___05Fpayload
#define TX_VALID tx___05Fvalid
#define TX_READY tx___05Fready
#define TX_PAYLOAD tx___05Fpayload

namespace {

#ifdef BARE_TOP
constexpr int RESET_CYCLES = 2;
// Idle: the core takes a byte (it is not executing a request) and offers none.
bool top_idle(const VTOP &top) { return top.RX_READY && !top.TX_VALID; }
#else
constexpr int RESET_CYCLES = 3;  // HarnessTop's reset reaches the core a cycle later: two cycles there
bool top_idle(const VTOP &top) { return top.idle; }
#endif

constexpr uint64_t SLICE = 4096;   // cycles between two looks at the pty while the core works
constexpr uint64_t SETTLE = 32;    // idle cycles before the core is taken to be idle
constexpr size_t OUT_LIMIT = 1 << 20;  // bytes queued for the host before tx is stalled

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const char *what) {
    std::fprintf(stderr, "harness: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

struct Stats {
    uint64_t cycles = 0, bytes_in = 0, bytes_out = 0;
    double simulating_s = 0;  // wall time spent in the model (not waiting for the host)
};

class Link {
  public:
    explicit Link(std::string workdir) : workdir_(std::move(workdir)) { open_pty(); }
    ~Link() { drop(); }

    int master() const { return master_; }
    bool connected() const { return master_ >= 0; }

    void open_pty() {
        master_ = posix_openpt(O_RDWR | O_NOCTTY);
        if (master_ < 0 || grantpt(master_) || unlockpt(master_)) die("posix_openpt");
        const char *name = ptsname(master_);
        if (!name) die("ptsname");
        std::string path = name;
        // Holding the slave open too keeps the master quiet (no EIO) while no host has it.
        slave_ = ::open(path.c_str(), O_RDWR | O_NOCTTY);
        if (slave_ < 0) die("open slave");
        termios raw{};
        if (tcgetattr(slave_, &raw)) die("tcgetattr");
        cfmakeraw(&raw);
        if (tcsetattr(slave_, TCSANOW, &raw)) die("tcsetattr");
        fcntl(master_, F_SETFL, fcntl(master_, F_GETFL) | O_NONBLOCK);
        std::string staged = workdir_ + "/device.tmp";
        FILE *f = std::fopen(staged.c_str(), "w");
        if (!f) die("device.tmp");
        std::fputs(path.c_str(), f);
        std::fclose(f);
        if (std::rename(staged.c_str(), (workdir_ + "/device").c_str())) die("rename device");
    }

    void drop() {
        if (master_ >= 0) {
            ::close(master_);
            ::close(slave_);
            master_ = slave_ = -1;
        }
        to_host_.clear();
    }

    void connect() {
        drop();
        open_pty();
    }

    // What the host has written (non-blocking).
    void receive(std::deque<uint8_t> &into) {
        if (master_ < 0) return;
        uint8_t buffer[1 << 16];
        for (;;) {
            ssize_t n = ::read(master_, buffer, sizeof buffer);
            if (n <= 0) return;
            into.insert(into.end(), buffer, buffer + n);
        }
    }

    // Queue bytes for the host and write what the pty takes now.
    void send(std::vector<uint8_t> &bytes) {
        if (master_ < 0) {
            bytes.clear();  // the cable is pulled: bytes are lost
            return;
        }
        to_host_.insert(to_host_.end(), bytes.begin(), bytes.end());
        bytes.clear();
        flush();
    }

    void flush() {
        while (master_ >= 0 && !to_host_.empty()) {
            ssize_t n = ::write(master_, to_host_.data(), to_host_.size());
            if (n <= 0) return;
            to_host_.erase(to_host_.begin(), to_host_.begin() + n);
        }
    }

    bool sending() const { return !to_host_.empty(); }

  private:
    std::string workdir_;
    int master_ = -1, slave_ = -1;
    std::vector<uint8_t> to_host_;
};

class Board {
  public:
    Board(VerilatedContext *context, const std::string &workdir, uint64_t idle_cycles, double silence_s)
        : top_(new VTOP{context}), link_(workdir), workdir_(workdir), idle_cycles_(idle_cycles),
          silence_(silence_s) {
        control_ = ::open((workdir + "/control").c_str(), O_RDONLY | O_NONBLOCK);
        ack_ = ::open((workdir + "/ack").c_str(), O_WRONLY | O_NONBLOCK);
        if (control_ < 0 || ack_ < 0) die("control/ack FIFOs");
        top_->clk = 0;
        top_->RX_VALID = 0;
        top_->TX_READY = 1;
        reset();
    }

    ~Board() {
        write_stats();
        top_->final();
    }

    void run() {
        Clock::time_point silent_since{};
        bool silent = false, timed_out = false;
        for (;;) {
            if (!commands()) return;
            if (paused_) {
                wait_for_control();
                continue;
            }
            link_.receive(from_host_);
            if (busy()) {
                simulate(SLICE, /*until_idle=*/true);
                link_.send(to_host_);
                silent = timed_out = false;
                continue;
            }
            link_.send(to_host_);
            if (!silent) {
                silent_since = Clock::now();
                silent = true;
            }
            double waited = std::chrono::duration<double>(Clock::now() - silent_since).count();
            if (!timed_out && waited >= silence_) {
                simulate(idle_cycles_, /*until_idle=*/false);
                timed_out = true;  // once per silence: nothing else can happen in an idle core
                continue;
            }
            wait(timed_out ? 100 : std::max(1, static_cast<int>((silence_ - waited) * 1000) + 1));
        }
    }

  private:
    // Whether the core has work: bytes to take, or it is executing or answering
    // (the top's idle low).
    bool busy() const { return !from_host_.empty() || idle_run_ < SETTLE; }

    void cycle() {
        top_->RX_VALID = !from_host_.empty();
        if (!from_host_.empty()) top_->RX_PAYLOAD = from_host_.front();
        top_->TX_READY = to_host_.size() < OUT_LIMIT;
        top_->clk = 0;
        top_->eval();
        const bool rx_fire = top_->RX_VALID && top_->RX_READY;
        const bool tx_fire = top_->TX_VALID && top_->TX_READY;
        const uint8_t byte = top_->TX_PAYLOAD;
        const bool idle = !top_->RX_VALID && top_idle(*top_);
        top_->clk = 1;
        top_->eval();
        if (rx_fire) {
            from_host_.pop_front();
            ++stats_.bytes_in;
        }
        if (tx_fire) {
            to_host_.push_back(byte);
            ++stats_.bytes_out;
        }
        idle_run_ = idle ? idle_run_ + 1 : 0;
        ++stats_.cycles;
    }

    void simulate(uint64_t cycles, bool until_idle) {
        const auto start = Clock::now();
        for (uint64_t i = 0; i < cycles; ++i) {
            cycle();
            if (until_idle && !busy()) break;
        }
        stats_.simulating_s += std::chrono::duration<double>(Clock::now() - start).count();
    }

    void reset() {
        from_host_.clear();
        top_->rst = 1;
        for (int i = 0; i < RESET_CYCLES; ++i) cycle();
        top_->rst = 0;
        idle_run_ = 0;
    }

    // Simulate until the core has taken every byte the host has written so far.
    void drain() {
        link_.receive(from_host_);
        while (!from_host_.empty()) {
            simulate(SETTLE, false);
            link_.receive(from_host_);
        }
        link_.send(to_host_);
    }

    void wait_for_control() {
        pollfd fd = {control_, POLLIN, 0};
        ::poll(&fd, 1, 100);
    }

    void wait(int timeout_ms) {
        pollfd fds[2] = {{control_, POLLIN, 0}, {link_.master(), POLLIN, 0}};
        if (link_.connected() && link_.sending()) fds[1].events |= POLLOUT;
        ::poll(fds, link_.connected() ? 2 : 1, timeout_ms);
    }

    // Carry out the control lines that came; false on quit (or the host gone).
    bool commands() {
        char buffer[4096];
        ssize_t n = ::read(control_, buffer, sizeof buffer);
        if (n == 0) return false;  // end of file: the host process died without saying quit
        if (n > 0) control_buffer_.append(buffer, n);
        size_t end;
        while ((end = control_buffer_.find('\n')) != std::string::npos) {
            std::string line = control_buffer_.substr(0, end);
            control_buffer_.erase(0, end + 1);
            if (line == "quit") return false;
            if (line == "pause") {
                paused_ = true;
            } else if (line != "stats") {
                paused_ = false;  // any command but stats resumes
            }
            if (line == "reset") {
                drain();
                reset();
            } else if (line == "drop") {
                link_.drop();
            } else if (line == "connect") {
                link_.connect();
            } else if (line == "stats") {
                write_stats();
            } else if (line != "pause" && !line.empty()) {
                std::fprintf(stderr, "harness: unknown control command '%s' ignored\n", line.c_str());
            }
            line += '\n';
            if (::write(ack_, line.data(), line.size()) < 0) die("ack");
        }
        return true;
    }

    void write_stats() {
        std::string staged = workdir_ + "/stats.json.tmp";
        FILE *f = std::fopen(staged.c_str(), "w");
        if (!f) return;
        std::fprintf(f, "{\"cycles\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"simulating_s\": %.6f}\n",
                     static_cast<unsigned long long>(stats_.cycles),
                     static_cast<unsigned long long>(stats_.bytes_in),
                     static_cast<unsigned long long>(stats_.bytes_out), stats_.simulating_s);
        std::fclose(f);
        std::rename(staged.c_str(), (workdir_ + "/stats.json").c_str());
    }

    std::unique_ptr<VTOP> top_;
    Link link_;
    std::string workdir_;
    uint64_t idle_cycles_;
    double silence_;
    int control_ = -1, ack_ = -1;
    std::string control_buffer_;
    std::deque<uint8_t> from_host_;
    std::vector<uint8_t> to_host_;
    uint64_t idle_run_ = 0;
    bool paused_ = false;
    Stats stats_;
};

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s WORKDIR IDLE_CYCLES SILENCE_MS\n", argv[0]);
        return 2;
    }
    auto context = std::make_unique<VerilatedContext>();
    Board board(context.get(), argv[1], std::strtoull(argv[2], nullptr, 10), std::atof(argv[3]) / 1000.0);
    board.run();
    return 0;
}

// bench/backends.hpp — the three things procreg_bench compares, behind one interface:
//
// - procreg itself (a registry over json_table or record_files);
// - the floor: the system calls such an operation cannot avoid, with no
//   parsing or formatting (open and flock the lock file, read the file,
//   write a temp file of the same size, fsync, rename, fsync the directory,
//   unlock; kill(pid, 0) per record where the operation judges liveness);
// - SQLite in WAL mode, what users pick instead: one connection kept open,
//   one prepared statement per operation, synchronous FULL on disk and OFF
//   on tmpfs.
//
// Each backend offers the same five operations on the same records.
#pragma once

#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/presets/algocline.hpp>
#include <procreg/registry.hpp>
#include <procreg/storage/json_table.hpp>

#include <sqlite3.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procreg_bench {

namespace fs = std::filesystem;
using record = procreg::algocline::pool_session;

/// The key of the i-th record: fixed width, so files keep their size.
inline std::string key_for(std::uint64_t i, const char* prefix = "sess") {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s-%010llu", prefix, static_cast<unsigned long long>(i));
    return buf;
}

/// A record shaped like algocline's pool entries.
inline record make_record(const std::string& key, std::uint32_t pid) {
    return record{key, pid, "/run/user/1000/algocline/pool/" + key + ".sock", "0.30.0", "2026-01-01T00:00:00Z"};
}

/// One implementation under test.
class backend {
public:
    virtual ~backend() = default;
    /// Adds a record whose key does not exist.
    virtual void insert(const record& r) = 0;
    /// Removes an existing record.
    virtual void erase(const std::string& key) = 0;
    /// Looks one record up by key.
    virtual void find(const std::string& key) = 0;
    /// Lists every record with its liveness; returns the count.
    virtual std::size_t list() = 0;
    /// Removes the records whose pid is dead; returns how many.
    virtual std::size_t reap() = 0;
    /// The time the backend measured itself for its last call, when it runs
    /// in another process (the seed): the figure then leaves out the pipe
    /// round trip to it.
    virtual std::optional<double> own_us() const { return std::nullopt; }
};

[[noreturn]] inline void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

// The floor and SQLite judge liveness exactly as kill_liveness does.
using procreg::liveness::pid_alive;

// ---------------------------------------------------------------------------
// procreg
// ---------------------------------------------------------------------------

/// A registry over `Storage` with the algocline record, flock and kill liveness.
template <class Storage>
class procreg_backend final : public backend {
public:
    using registry_type = procreg::registry<record, procreg::lock::flock_lock, Storage, procreg::liveness::kill_liveness>;

    explicit procreg_backend(typename Storage::options opts) : registry_(Storage(std::move(opts))) {}

    void insert(const record& r) override { registry_.insert(r); }
    void erase(const std::string& key) override {
        if (!registry_.erase(key)) throw std::runtime_error("procreg erase: no record " + key);
    }
    void find(const std::string& key) override {
        if (!registry_.find(key)) throw std::runtime_error("procreg find: no record " + key);
    }
    std::size_t list() override { return registry_.list().size(); }
    std::size_t reap() override { return registry_.reap().size(); }

    /// Inserts `n` records in one transaction (set-up, not measured).
    void populate(std::uint64_t n, std::uint32_t pid) {
        registry_.transact([&](typename registry_type::transaction_type& tx) {
            for (std::uint64_t i = 0; i < n; ++i) tx.insert(make_record(key_for(i), pid));
        });
    }

    registry_type& registry() { return registry_; }

private:
    registry_type registry_;
};

// ---------------------------------------------------------------------------
// The floor
// ---------------------------------------------------------------------------

// The system calls every floor operation shares.
class floor_base : public backend {
protected:
    floor_base(fs::path dir, bool durable) : dir_path_(std::move(dir)), durable_(durable) {
        fs::create_directories(dir_path_);
        dirfd_ = ::open(dir_path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd_ < 0) fail("open " + dir_path_.string());
        lock_path_ = dir_path_ / ".floor.lock";
    }
    ~floor_base() override {
        if (dirfd_ >= 0) ::close(dirfd_);
    }

    // open + flock the lock file; returns the descriptor (close = unlock).
    int lock() const {
        const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) fail("open lock");
        while (::flock(fd, LOCK_EX) != 0) {
            if (errno != EINTR) fail("flock");
        }
        return fd;
    }
    static void unlock(int fd) { ::close(fd); }

    // open, fstat, read all, close; false when the file does not exist.
    bool read_file(const char* name, std::string& buffer) const {
        const int fd = ::openat(dirfd_, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) return false;
            fail(std::string("open ") + name);
        }
        struct ::stat st {};
        if (::fstat(fd, &st) != 0) fail("fstat");
        buffer.resize(static_cast<std::size_t>(st.st_size));
        std::size_t used = 0;
        while (used < buffer.size()) {
            const ssize_t got = ::read(fd, buffer.data() + used, buffer.size() - used);
            if (got < 0) fail("read");
            if (got == 0) break;
            used += static_cast<std::size_t>(got);
        }
        ::close(fd);
        return true;
    }

    // temp file (O_EXCL), write, fsync, close, rename, fsync the directory.
    void replace_file(const char* name, const char* data, std::size_t size) {
        const std::string temp = "." + std::string(name) + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(counter_++);
        const int fd = ::openat(dirfd_, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) fail("create temp");
        std::size_t done = 0;
        while (done < size) {
            const ssize_t put = ::write(fd, data + done, size - done);
            if (put < 0) fail("write");
            done += static_cast<std::size_t>(put);
        }
        if (durable_ && ::fsync(fd) != 0) fail("fsync");
        if (::close(fd) != 0) fail("close");
        if (::renameat(dirfd_, temp.c_str(), dirfd_, name) != 0) fail("rename");
        sync_directory();
    }

    void sync_directory() const {
        if (durable_ && ::fsync(dirfd_) != 0) fail("fsync dir");
    }

    fs::path dir_path_;
    bool durable_;
    int dirfd_ = -1;
    fs::path lock_path_;
    std::uint64_t counter_ = 0;
};

/// The floor of a one-file table: every operation reads the whole file,
/// every change writes a whole new file of the new size.
class floor_table final : public floor_base {
public:
    /// `contents` is the table file procreg wrote for the same records;
    /// `record_bytes` how much one record adds to it; `pids` the records' pids.
    /// A null `contents` attaches to the file another floor_table wrote
    /// (contention workers).
    floor_table(fs::path dir, bool durable, const std::string* contents, std::size_t record_bytes,
                std::vector<std::uint32_t> pids)
        : floor_base(std::move(dir), durable), record_bytes_(record_bytes), pids_(std::move(pids)) {
        if (contents) replace_file(name_, contents->data(), contents->size());
        pad_.assign(record_bytes_, ' ');
    }

    void insert(const record& r) override { change(+1, r.pid); }
    void erase(const std::string&) override { change(-1, 0); }
    void find(const std::string&) override {
        const int lk = lock();
        read_file(name_, buffer_);
        unlock(lk);
    }
    std::size_t list() override {
        const int lk = lock();
        read_file(name_, buffer_);
        std::size_t alive = 0;
        for (const auto pid : pids_) alive += pid_alive(pid) ? 1 : 0;
        unlock(lk);
        return pids_.size();
    }
    std::size_t reap() override {
        const int lk = lock();
        read_file(name_, buffer_);
        std::size_t dead = 0;
        std::vector<std::uint32_t> kept;
        kept.reserve(pids_.size());
        for (const auto pid : pids_) {
            if (pid_alive(pid)) {
                kept.push_back(pid);
            } else {
                ++dead;
            }
        }
        if (dead) {
            const std::size_t size = buffer_.size() - std::min(buffer_.size(), dead * record_bytes_);
            replace_file(name_, buffer_.data(), size);
            pids_.swap(kept);
        }
        unlock(lk);
        return dead;
    }

private:
    void change(int delta, std::uint32_t pid) {
        const int lk = lock();
        read_file(name_, buffer_);
        if (delta > 0) {
            buffer_ += pad_;
            pids_.push_back(pid);
        } else {
            buffer_.resize(buffer_.size() - std::min(buffer_.size(), record_bytes_));
            if (!pids_.empty()) pids_.pop_back();
        }
        replace_file(name_, buffer_.data(), buffer_.size());
        unlock(lk);
    }

    static constexpr const char* name_ = "table.json";
    std::size_t record_bytes_;
    std::vector<std::uint32_t> pids_;
    std::string buffer_;
    std::string pad_;
};

/// The floor of one file per record: a change writes (or unlinks) one small
/// file; a listing reads the directory and every file in it.
class floor_files final : public floor_base {
public:
    /// Creates `n` files of `record_bytes` bytes each (set-up, not measured).
    floor_files(fs::path dir, bool durable, std::size_t record_bytes)
        : floor_base(std::move(dir), durable), record_bytes_(record_bytes) {
        pad_.assign(record_bytes_, ' ');
    }

    /// Takes over `n` record files procreg wrote in the same directory
    /// (on a slow disk, creating and deleting 100,000 files costs minutes).
    void adopt(std::uint64_t n, std::uint32_t pid) {
        for (std::uint64_t i = 0; i < n; ++i) pids_[key_for(i) + ".json"] = pid;
    }

    void populate(std::uint64_t n, std::uint32_t pid) {
        const bool was = durable_;
        durable_ = false;
        for (std::uint64_t i = 0; i < n; ++i) {
            const std::string name = key_for(i) + ".json";
            replace_file(name.c_str(), pad_.data(), pad_.size());
            pids_[name] = pid;
        }
        durable_ = was;
    }

    void insert(const record& r) override {
        const std::string name = r.sid + ".json";
        const int lk = lock();
        if (read_file(name.c_str(), buffer_)) throw std::runtime_error("floor insert: exists");
        replace_file(name.c_str(), pad_.data(), pad_.size());
        pids_[name] = r.pid;
        unlock(lk);
    }
    void erase(const std::string& key) override {
        const std::string name = key + ".json";
        const int lk = lock();
        read_file(name.c_str(), buffer_);
        if (::unlinkat(dirfd_, name.c_str(), 0) != 0) fail("unlink");
        sync_directory();
        pids_.erase(name);
        unlock(lk);
    }
    void find(const std::string& key) override {
        const std::string name = key + ".json";
        const int lk = lock();
        read_file(name.c_str(), buffer_);
        unlock(lk);
    }
    std::size_t list() override {
        const int lk = lock();
        const std::size_t count = scan(nullptr);
        unlock(lk);
        return count;
    }
    std::size_t reap() override {
        const int lk = lock();
        std::vector<std::string> dead;
        scan(&dead);
        for (const auto& name : dead) {
            if (::unlinkat(dirfd_, name.c_str(), 0) != 0) fail("unlink");
            pids_.erase(name);
        }
        if (!dead.empty()) sync_directory();
        unlock(lk);
        return dead.size();
    }

private:
    // readdir, then open/fstat/read/close and kill(pid, 0) for every record file.
    std::size_t scan(std::vector<std::string>* dead) {
        const int copy = ::fcntl(dirfd_, F_DUPFD_CLOEXEC, 0);
        DIR* stream = ::fdopendir(copy);
        if (!stream) fail("fdopendir");
        ::rewinddir(stream);
        std::vector<std::string> names;
        while (const dirent* entry = ::readdir(stream)) {
            const std::string_view name(entry->d_name);
            if (name.front() == '.' || name.size() <= 5 || name.substr(name.size() - 5) != ".json") continue;
            names.emplace_back(name);
        }
        ::closedir(stream);
        for (const auto& name : names) {
            read_file(name.c_str(), buffer_);
            const auto found = pids_.find(name);  // files it did not write or adopt are not its business
            if (found != pids_.end() && !pid_alive(found->second) && dead) dead->push_back(name);
        }
        return names.size();
    }

    std::size_t record_bytes_;
    std::string pad_;
    std::string buffer_;
    std::map<std::string, std::uint32_t> pids_;  // what parsing would tell; the floor does not parse
};

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

/// A table of the same records in an SQLite database in WAL mode.
class sqlite_backend final : public backend {
public:
    sqlite_backend(const fs::path& file, bool durable) {
        if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            nullptr) != SQLITE_OK) {
            throw std::runtime_error("sqlite3_open " + file.string());
        }
        sqlite3_busy_timeout(db_, 60000);
        exec("PRAGMA journal_mode=WAL");
        exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
        exec("CREATE TABLE IF NOT EXISTS sessions(sid TEXT PRIMARY KEY, pid INTEGER NOT NULL, sock TEXT NOT NULL, "
             "version TEXT NOT NULL, created_at TEXT NOT NULL)");
        insert_ = prepare("INSERT INTO sessions(sid, pid, sock, version, created_at) VALUES(?1, ?2, ?3, ?4, ?5)");
        erase_ = prepare("DELETE FROM sessions WHERE sid = ?1");
        find_ = prepare("SELECT sid, pid, sock, version, created_at FROM sessions WHERE sid = ?1");
        list_ = prepare("SELECT sid, pid, sock, version, created_at FROM sessions");
        begin_ = prepare("BEGIN IMMEDIATE");
        commit_ = prepare("COMMIT");
    }
    ~sqlite_backend() override {
        for (sqlite3_stmt* s : {insert_, erase_, find_, list_, begin_, commit_}) sqlite3_finalize(s);
        sqlite3_close(db_);
    }

    void insert(const record& r) override {
        bind_record(insert_, r);
        step_done(insert_);
    }
    void erase(const std::string& key) override {
        sqlite3_bind_text(erase_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
        step_done(erase_);
        if (sqlite3_changes(db_) != 1) throw std::runtime_error("sqlite erase: no record " + key);
    }
    void find(const std::string& key) override {
        sqlite3_bind_text(find_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
        bool found = false;
        while (step_row(find_)) {
            record r = row(find_);
            found = !r.sid.empty();
        }
        if (!found) throw std::runtime_error("sqlite find: no record " + key);
    }
    std::size_t list() override {
        std::vector<std::pair<record, bool>> out;
        while (step_row(list_)) {
            record r = row(list_);
            const bool alive = pid_alive(r.pid);
            out.emplace_back(std::move(r), alive);
        }
        return out.size();
    }
    std::size_t reap() override {
        step_done(begin_);
        std::vector<std::string> dead;
        while (step_row(list_)) {
            record r = row(list_);
            if (!pid_alive(r.pid)) dead.push_back(std::move(r.sid));
        }
        for (const auto& key : dead) {
            sqlite3_bind_text(erase_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
            step_done(erase_);
        }
        step_done(commit_);
        return dead.size();
    }

    /// Inserts `n` records in one transaction (set-up, not measured).
    void populate(std::uint64_t n, std::uint32_t pid) {
        exec("BEGIN");
        for (std::uint64_t i = 0; i < n; ++i) insert(make_record(key_for(i), pid));
        exec("COMMIT");
    }

private:
    void exec(const char* sql) {
        char* message = nullptr;
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
            std::string text = message ? message : "?";
            sqlite3_free(message);
            throw std::runtime_error(std::string("sqlite: ") + sql + ": " + text);
        }
    }
    sqlite3_stmt* prepare(const char* sql) {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
            throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
        }
        return stmt;
    }
    void bind_record(sqlite3_stmt* stmt, const record& r) {
        sqlite3_bind_text(stmt, 1, r.sid.data(), static_cast<int>(r.sid.size()), SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, r.pid);
        sqlite3_bind_text(stmt, 3, r.sock.data(), static_cast<int>(r.sock.size()), SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, r.version.data(), static_cast<int>(r.version.size()), SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, r.created_at.data(), static_cast<int>(r.created_at.size()), SQLITE_STATIC);
    }
    static std::string text(sqlite3_stmt* stmt, int column) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
        return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt, column))) : std::string();
    }
    static record row(sqlite3_stmt* stmt) {
        return record{text(stmt, 0), static_cast<std::uint32_t>(sqlite3_column_int64(stmt, 1)), text(stmt, 2),
                      text(stmt, 3), text(stmt, 4)};
    }
    void step_done(sqlite3_stmt* stmt) {
        const int rc = sqlite3_step(stmt);
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        if (rc != SQLITE_DONE) throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errmsg(db_));
    }
    bool step_row(sqlite3_stmt* stmt) {
        const int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) return true;
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        if (rc != SQLITE_DONE) throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errmsg(db_));
        return false;
    }

    sqlite3* db_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    sqlite3_stmt* erase_ = nullptr;
    sqlite3_stmt* find_ = nullptr;
    sqlite3_stmt* list_ = nullptr;
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
};

}  // namespace procreg_bench

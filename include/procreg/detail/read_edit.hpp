// procreg/detail/read_edit.hpp — a file read as an edit of a text held already.
//
// A storage that keeps the text of the file it last read or wrote, and
// finds the file rewritten by another process, usually finds it changed in
// one stretch. Reading the file whole into a second buffer to compare the
// two holds both texts at once (for a 19.5 MB table, 19.5 MB more at the
// peak) and writes every page of the second; this reads it through one
// small buffer instead: from the start while it equals the kept text (the
// common prefix), from the end while it equals the kept text's end (the
// common suffix, never overlapping the prefix), and only the bytes between
// (the middle) into a string. The kept text with its stretch
// [prefix, old size - suffix) replaced by the middle is the file.
//
// Invariant: a text_edit returned describes the file as it was read: every
// byte of it was read and compared or kept. Nothing is returned (the caller
// then reads the file whole, which words any error) when a read fails or
// comes short of the size fstat gave, or when the middle would exceed
// `max_middle` bytes.
#pragma once

#include <procreg/detail/file_io.hpp>
#include <procreg/detail/sys.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace procreg::detail {

/// A file as an edit of a text: the text's first `prefix` and last `suffix`
/// bytes, with `middle` between them, are the file (`size` bytes).
struct text_edit {
    std::size_t prefix = 0;
    std::size_t suffix = 0;
    std::size_t size = 0;
    std::string middle;

    /// Applies the edit to `text`, the text it was read against, in place.
    void apply(std::string& text) const { text.replace(prefix, text.size() - suffix - prefix, middle); }
};

/// The length of the longest common prefix of `a` and `b` (compared in
/// blocks of 4 KiB, then of 64 bytes, then byte by byte).
inline std::size_t common_prefix(std::string_view a, std::string_view b) noexcept {
    const std::size_t n = std::min(a.size(), b.size());
    std::size_t length = 0;
    for (const std::size_t block : {std::size_t{4096}, std::size_t{64}, std::size_t{1}}) {
        while (length + block <= n && std::memcmp(a.data() + length, b.data() + length, block) == 0) length += block;
    }
    return length;
}

/// The length of the longest common suffix of `a` and `b`, at most `limit`.
inline std::size_t common_suffix(std::string_view a, std::string_view b, std::size_t limit) noexcept {
    const std::size_t n = std::min({a.size(), b.size(), limit});
    const char* const a_end = a.data() + a.size();
    const char* const b_end = b.data() + b.size();
    std::size_t length = 0;
    for (const std::size_t block : {std::size_t{4096}, std::size_t{64}, std::size_t{1}}) {
        while (length + block <= n && std::memcmp(a_end - length - block, b_end - length - block, block) == 0) {
            length += block;
        }
    }
    return length;
}

/// The edit that makes `old_text` into `new_text` (both in memory).
inline text_edit edit_between(std::string_view old_text, std::string_view new_text) {
    text_edit edit;
    edit.size = new_text.size();
    edit.prefix = common_prefix(old_text, new_text);
    edit.suffix = common_suffix(old_text, new_text, std::min(old_text.size(), new_text.size()) - edit.prefix);
    edit.middle.assign(new_text.substr(edit.prefix, new_text.size() - edit.suffix - edit.prefix));
    return edit;
}

/// Reads exactly `size` bytes at `offset` of `fd` into `into`; false when a
/// read fails or the file ends first.
inline bool read_exactly(int fd, char* into, std::size_t size, std::size_t offset) noexcept {
    while (size > 0) {
        const ssize_t got = sys::pread(fd, into, size, static_cast<off_t>(offset));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        into += got;
        size -= static_cast<std::size_t>(got);
        offset += static_cast<std::size_t>(got);
    }
    return true;
}

/// Reads the file `opened` as an edit of `old_text` through `chunk` (a
/// scratch buffer; see the file comment). Reads by offset only (pread): the
/// descriptor's file offset is left where it was, so a caller that finds no
/// edit can still read the file whole from the same descriptor.
inline std::optional<text_edit> read_as_edit(const opened_file& opened, std::string_view old_text,
                                             std::string& chunk, std::size_t max_middle) {
    constexpr std::size_t chunk_size = std::size_t{256} << 10;
    const int fd = opened.fd.get();
    const auto size = static_cast<std::size_t>(opened.status.st_size);
    if (size <= chunk_size) {  // the whole file in the chunk: compared in memory
        chunk.resize(size + 1);
        std::size_t got = 0;
        while (got <= size) {  // one byte more than fstat said: the file must end there
            const std::size_t asked = size + 1 - got;
            const ssize_t r = sys::pread(fd, &chunk[got], asked, static_cast<off_t>(got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return std::nullopt;
            if (r == 0) break;
            got += static_cast<std::size_t>(r);
            // Short, ending exactly at the size fstat gave: the end of the
            // file (as read_opened takes it), without a read that returns 0.
            if (static_cast<std::size_t>(r) < asked && got == size) break;
        }
        if (got != size) return std::nullopt;
        text_edit edit = edit_between(old_text, std::string_view(chunk).substr(0, size));
        if (edit.middle.size() > max_middle) return std::nullopt;
        return edit;
    }
    chunk.resize(chunk_size);
    text_edit edit;
    edit.size = size;
    // The common prefix: chunks from the start while they equal the kept text.
    const std::size_t common = std::min(size, old_text.size());
    while (edit.prefix < common) {
        const std::size_t length = std::min(chunk_size, size - edit.prefix);
        if (!read_exactly(fd, chunk.data(), length, edit.prefix)) return std::nullopt;
        const std::size_t same = common_prefix(std::string_view(chunk.data(), length), old_text.substr(edit.prefix));
        edit.prefix += same;
        if (same < length) break;
    }
    // The common suffix, from the end, never overlapping the prefix.
    const std::size_t limit = common - edit.prefix;
    while (edit.suffix < limit) {
        const std::size_t length = std::min(chunk_size, limit - edit.suffix);
        if (!read_exactly(fd, chunk.data(), length, size - edit.suffix - length)) return std::nullopt;
        const std::size_t same = common_suffix(std::string_view(chunk.data(), length),
                                               old_text.substr(0, old_text.size() - edit.suffix), length);
        edit.suffix += same;
        if (same < length) break;
    }
    const std::size_t middle = size - edit.prefix - edit.suffix;
    if (middle > max_middle) return std::nullopt;
    edit.middle.resize(middle);
    if (!read_exactly(fd, edit.middle.data(), middle, edit.prefix)) return std::nullopt;
    // The end of the file is where fstat said: nothing after it.
    char past = 0;
    if (sys::pread(fd, &past, 1, static_cast<off_t>(size)) != 0) return std::nullopt;
    return edit;
}

}  // namespace procreg::detail

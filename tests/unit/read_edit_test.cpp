// detail/read_edit.hpp: a file read through a small buffer as an edit of a
// text held already. For files below and above the buffer's size, changed at
// the start, the end, in the middle and across the buffer's boundaries,
// grown, shrunk, the same or entirely different, the edit read must be the
// one computed from both texts in memory, and applying it must give the
// file; a file that is not the size fstat gave, or whose middle is above the
// bound, gives nothing.
#define BOOST_TEST_MODULE procreg read_edit
#include <boost/test/unit_test.hpp>

#include <procreg/detail/read_edit.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using procreg::detail::text_edit;

namespace {

constexpr std::size_t chunk = std::size_t{256} << 10;  // read_as_edit's buffer

std::string text_of(std::size_t size, unsigned seed) {
    std::mt19937 rng(seed);
    std::string out(size, ' ');
    for (auto& c : out) c = static_cast<char>('a' + rng() % 26);
    return out;
}

std::optional<text_edit> read_edit(const fs::path& file, const std::string& old_text,
                                   std::size_t max_middle = std::size_t(-1)) {
    auto opened = procreg::detail::open_file_at(AT_FDCWD, file, file.c_str(), std::size_t{1} << 30);
    BOOST_TEST_REQUIRE(opened.has_value());
    std::string scratch;
    return procreg::detail::read_as_edit(*opened, old_text, scratch, max_middle);
}

void check_edit(const fs::path& file, const std::string& old_text, const std::string& new_text, const std::string& what) {
    procreg_test::write_text(file, new_text);
    const auto got = read_edit(file, old_text);
    BOOST_TEST_REQUIRE(got.has_value(), what);
    const text_edit want = procreg::detail::edit_between(old_text, new_text);
    BOOST_TEST(got->prefix == want.prefix, what);
    BOOST_TEST(got->suffix == want.suffix, what);
    BOOST_TEST(got->size == new_text.size(), what);
    BOOST_TEST((got->middle == want.middle), what);
    std::string applied = old_text;
    got->apply(applied);
    BOOST_TEST((applied == new_text), what);
}

}  // namespace

BOOST_AUTO_TEST_CASE(edits_read_through_the_buffer_are_the_edits_between_the_texts) {
    procreg_test::temp_dir dir;
    const fs::path file = dir.path() / "t";
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{2000}, chunk - 1, chunk, chunk + 1,
                                   3 * chunk + 777}) {
        const std::string old_text = text_of(size, 1);
        const std::string tag = "size " + std::to_string(size);
        check_edit(file, old_text, old_text, tag + ": the same");
        check_edit(file, old_text, text_of(size, 2), tag + ": all different");
        check_edit(file, old_text, "", tag + ": empty");
        check_edit(file, old_text, old_text + "tail", tag + ": grown at the end");
        check_edit(file, old_text, "head" + old_text, tag + ": grown at the start");
        if (size == 0) continue;
        check_edit(file, old_text, old_text.substr(1), tag + ": first byte gone");
        check_edit(file, old_text, old_text.substr(0, size - 1), tag + ": last byte gone");
        for (const std::size_t at : {std::size_t{0}, size / 2, size - 1, chunk - 1, chunk, chunk + 1, 2 * chunk}) {
            if (at >= size) continue;
            const std::string where = tag + " at " + std::to_string(at);
            std::string changed = old_text;
            changed[at] = '#';
            check_edit(file, old_text, changed, where + ": one byte changed");
            std::string inserted = old_text;
            inserted.insert(at, "{\"inserted\": 1},\n    ");
            check_edit(file, old_text, inserted, where + ": inserted");
            std::string erased = old_text;
            erased.erase(at, std::min<std::size_t>(150, size - at));
            check_edit(file, old_text, erased, where + ": erased");
            // The new text repeats what follows: prefix and suffix must not overlap.
            std::string repeated = old_text;
            repeated.insert(at, old_text.substr(at, std::min<std::size_t>(300, size - at)));
            check_edit(file, old_text, repeated, where + ": repeated");
        }
    }
}

BOOST_AUTO_TEST_CASE(a_middle_above_the_bound_gives_nothing) {
    procreg_test::temp_dir dir;
    const fs::path file = dir.path() / "t";
    for (const std::size_t size : {std::size_t{5000}, 2 * chunk}) {
        const std::string old_text = text_of(size, 3);
        std::string changed = old_text;
        for (std::size_t i = 100; i < 1100; ++i) changed[i] = '#';
        procreg_test::write_text(file, changed);
        BOOST_TEST(!read_edit(file, old_text, 999).has_value());
        const auto within = read_edit(file, old_text, 1000);
        BOOST_TEST_REQUIRE(within.has_value());
        BOOST_TEST(within->middle.size() == 1000u);
    }
}

// The file grew after fstat gave its size (a writer outside the protocol):
// not an edit read as of one moment, so nothing.
BOOST_AUTO_TEST_CASE(a_file_not_of_the_size_fstat_gave_gives_nothing) {
    procreg_test::temp_dir dir;
    const fs::path file = dir.path() / "t";
    for (const std::size_t size : {std::size_t{5000}, 2 * chunk}) {
        const std::string old_text = text_of(size, 4);
        procreg_test::write_text(file, old_text);
        auto opened = procreg::detail::open_file_at(AT_FDCWD, file, file.c_str(), std::size_t{1} << 30);
        BOOST_TEST_REQUIRE(opened.has_value());
        const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND);
        BOOST_TEST_REQUIRE(fd >= 0);
        BOOST_TEST_REQUIRE(::write(fd, "more", 4) == 4);
        ::close(fd);
        std::string scratch;
        BOOST_TEST(!procreg::detail::read_as_edit(*opened, old_text, scratch, std::size_t(-1)).has_value());
        BOOST_TEST_REQUIRE(::truncate(file.c_str(), static_cast<off_t>(size / 2)) == 0);
        BOOST_TEST(!procreg::detail::read_as_edit(*opened, old_text, scratch, std::size_t(-1)).has_value());
    }
}

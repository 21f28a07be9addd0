// procreg/dynamic_record.hpp — a record whose format nobody compiled in.
//
// `dynamic_record` is a JSON object kept exactly as read; its key and pid
// are found by field paths given at run time (`"sid"`, `"pid"`,
// `"data.instance_id"`). A registry of such records lists, checks and reaps
// any registry whose layout is known only when the program runs (the
// `procreg` command-line tool is one user), and every rewrite keeps every
// field as it was.
//
// Invariant: a dynamic_record is decoded only under a `dynamic_layout` in
// scope on the calling thread (`dynamic_record::layout_scope`), and it keeps
// that layout: its key and pid never change meaning after decoding, and a
// decode without a layout in scope is a decode error, never a guess.
//
// Why a scope rather than a member of the storage or registry: the field
// paths are run-time values, but records are decoded through Boost.JSON's
// `value_to`, which carries no context, by storages that know nothing about
// records. A registry call runs entirely on its calling thread, so a
// thread-local layout set around the call reaches every decode of that call
// and no other thread's. See docs/record-types.md.
//
//     procreg::dynamic_layout layout{"sid", "pid"};
//     procreg::dynamic_record::layout_scope scope(layout);
//     auto reg = procreg::registry<procreg::dynamic_record, procreg::lock::flock_lock,
//                                  procreg::storage::json_table,
//                                  procreg::dynamic_liveness<>>(procreg::storage::json_table(opts));
//     for (auto& row : reg.list()) std::cout << row.record.key() << '\n';
#pragma once

#include <procreg/detail/json_codec.hpp>
#include <procreg/liveness/kill_liveness.hpp>
#include <procreg/record_traits.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace procreg {

/// Where a dynamic record keeps its key and its owner's pid.
struct dynamic_layout {
    /// Dotted path of the key field (`"sid"`, `"data.instance_id"`); the
    /// field must hold a string or a non-negative integer. Empty: every
    /// record has the key `constant_key` (a claim file's single record).
    std::string key_field;
    /// Dotted path of the pid field. Empty, or a record where the field is
    /// absent or null: the record has no pid (`dynamic_record::pid()` is
    /// nothing) and `dynamic_liveness` counts it alive, so it is never reaped.
    std::string pid_field;
    /// The key of every record when `key_field` is empty.
    std::string constant_key = "claim";
};

/// The value at dotted `path` in `object`, or null when a step is missing
/// or not an object. Field names containing '.' cannot be reached.
inline const boost::json::value* find_json_path(const boost::json::object& object, std::string_view path) {
    const boost::json::object* current = &object;
    while (true) {
        const auto dot = path.find('.');
        const std::string_view step = path.substr(0, dot);
        const auto found = current->find(step);
        if (found == current->end()) return nullptr;
        if (dot == std::string_view::npos) return &found->value();
        current = found->value().if_object();
        if (!current) return nullptr;
        path.remove_prefix(dot + 1);
    }
}

/// A JSON object with its key and pid found through a `dynamic_layout`.
class dynamic_record {
public:
    /// Puts `layout` in scope on this thread for the scope's lifetime;
    /// scopes nest (the innermost wins). Every registry call on dynamic
    /// records must run inside one.
    class layout_scope {
    public:
        /// Makes `layout` the one records decode with.
        explicit layout_scope(dynamic_layout layout)
            : previous_(current()), layout_(std::make_shared<const dynamic_layout>(std::move(layout))) {
            current() = layout_;
        }
        /// Restores the layout that was in scope before.
        ~layout_scope() { current() = std::move(previous_); }
        layout_scope(const layout_scope&) = delete;
        layout_scope& operator=(const layout_scope&) = delete;

    private:
        std::shared_ptr<const dynamic_layout> previous_;
        std::shared_ptr<const dynamic_layout> layout_;
    };

    /// The layout in scope on this thread, or null.
    static const dynamic_layout* layout_in_scope() noexcept { return current().get(); }

    /// `fields` read through the layout in scope. Throws `detail::decode_error`
    /// naming the field when there is no layout in scope, the key field is
    /// missing or not a string or non-negative integer, or the pid field is
    /// present and not a non-negative integer.
    static dynamic_record from_json(boost::json::object fields) {
        const auto layout = current();
        if (!layout) throw detail::decode_error("no dynamic_layout in scope (open a dynamic_record::layout_scope)");
        dynamic_record out;
        out.layout_ = layout;
        if (layout->key_field.empty()) {
            out.key_ = layout->constant_key;
        } else {
            const boost::json::value* key = find_json_path(fields, layout->key_field);
            if (!key) throw detail::decode_error(layout->key_field + ": missing field");
            if (key->is_string()) {
                out.key_ = std::string(key->get_string());
            } else if (auto number = non_negative(*key)) {
                out.key_ = std::to_string(*number);
            } else {
                throw detail::decode_error(layout->key_field + ": expected a string");
            }
        }
        if (!layout->pid_field.empty()) {
            const boost::json::value* pid = find_json_path(fields, layout->pid_field);
            if (pid && !pid->is_null()) {
                out.pid_ = non_negative(*pid);
                if (!out.pid_) throw detail::decode_error(layout->pid_field + ": expected a non-negative integer");
            }
        }
        out.fields_ = std::move(fields);
        return out;
    }

    /// The record's key.
    const std::string& key() const noexcept { return key_; }
    /// The owner's pid; nothing when the record has none.
    std::optional<std::uint64_t> pid() const noexcept { return pid_; }
    /// Every field, exactly as read.
    const boost::json::object& fields() const noexcept { return fields_; }
    /// The layout the record was decoded with (null for a default-constructed record).
    const dynamic_layout* layout() const noexcept { return layout_.get(); }

    /// Field-wise equality of the objects.
    friend bool operator==(const dynamic_record& a, const dynamic_record& b) { return a.fields_ == b.fields_; }
    /// Field-wise inequality of the objects.
    friend bool operator!=(const dynamic_record& a, const dynamic_record& b) { return !(a == b); }

    /// Boost.JSON conversion: the object, every field as it is.
    friend void tag_invoke(boost::json::value_from_tag, boost::json::value& out, const dynamic_record& record) {
        out = record.fields_;
    }
    /// Boost.JSON conversion: through the layout in scope (`from_json`).
    friend dynamic_record tag_invoke(boost::json::value_to_tag<dynamic_record>, const boost::json::value& in) {
        const boost::json::object* object = in.if_object();
        if (!object) throw detail::decode_error("expected an object");
        return from_json(*object);
    }

private:
    static std::optional<std::uint64_t> non_negative(const boost::json::value& value) noexcept {
        if (value.is_uint64()) return value.get_uint64();
        if (value.is_int64() && value.get_int64() >= 0) return static_cast<std::uint64_t>(value.get_int64());
        return std::nullopt;
    }

    static std::shared_ptr<const dynamic_layout>& current() noexcept {
        thread_local std::shared_ptr<const dynamic_layout> layout;
        return layout;
    }

    boost::json::object fields_;
    std::string key_;
    std::optional<std::uint64_t> pid_;
    std::shared_ptr<const dynamic_layout> layout_;
};

/// The key is the layout's key field; the pid is the pid field, 0 when the
/// record has none (use `dynamic_liveness` so that such a record is not dead).
template <>
struct record_traits<dynamic_record> {
    /// The key found through the layout.
    static std::string_view key(const dynamic_record& record) noexcept { return record.key(); }
    /// The pid found through the layout, or 0.
    static std::uint64_t pid(const dynamic_record& record) noexcept { return record.pid().value_or(0); }
};

/// Liveness for dynamic records: a record without a pid (no pid field in the
/// layout, or the field absent or null in the stored object) is alive —
/// nothing is known about an owner, so nothing is reaped; every other record
/// is judged by `Inner` (owner identities honoured when `Inner` stores them).
template <class Inner = liveness::kill_liveness>
class dynamic_liveness {
public:
    /// A dynamic record's stored object is the whole record (no storage
    /// reads it into a struct), so the core need not complete it
    /// (detail/ask_liveness.hpp).
    static constexpr bool judges_by_stored_identity = true;

    /// Judges records with a pid by `inner`.
    explicit dynamic_liveness(Inner inner = Inner{}) : inner_(std::move(inner)) {}

    /// True when the stored object has no pid, else what `Inner` says.
    bool is_alive(std::uint64_t pid, const boost::json::object& stored) const {
        const dynamic_layout* layout = dynamic_record::layout_in_scope();
        if (pid == 0 && layout) {
            if (layout->pid_field.empty()) return true;
            const boost::json::value* field = find_json_path(stored, layout->pid_field);
            if (!field || field->is_null()) return true;
        }
        return inner_.is_alive(pid, stored);
    }
    /// What `Inner` stores (nothing for a record without a pid).
    void stamp_identity(std::uint64_t pid, boost::json::object& stored) const {
        if (pid != 0) inner_.stamp_identity(pid, stored);
    }
    /// `Inner`'s owner watch (a pidfd; docs/watch.md), offered only when
    /// `Inner` offers one, so a watcher of dynamic records is told of an
    /// owner's exit instead of polling for it.
    template <class I = Inner, class = std::void_t<decltype(std::declval<const I&>().watch_owner(0u))>>
    int watch_owner(std::uint64_t pid) const noexcept {
        return inner_.watch_owner(pid);
    }
    /// The policy records with a pid are judged by.
    const Inner& inner() const noexcept { return inner_; }

private:
    Inner inner_;
};

}  // namespace procreg

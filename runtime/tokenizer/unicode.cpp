#include "runtime/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <vector>

#include "runtime/tokenizer/unicode_data.h"

namespace dsrt::tokenizer::unicode {
namespace {

namespace data = unicode_data;

// Categories of the Basic Multilingual Plane, expanded once: the matcher asks for a
// category per character, and almost all text lives in the BMP.
const std::array<std::uint8_t, 0x10000>& bmp_categories() {
  static const auto table = [] {
    std::array<std::uint8_t, 0x10000> t{};
    for (std::size_t i = 0; i < data::category_runs_count; ++i) {
      const char32_t start = data::category_runs[i].start;
      if (start >= 0x10000) break;
      const char32_t end = i + 1 < data::category_runs_count
                               ? std::min<char32_t>(data::category_runs[i + 1].start, 0x10000)
                               : 0x10000;
      std::fill(t.begin() + start, t.begin() + end, data::category_runs[i].category);
    }
    return t;
  }();
  return table;
}

constexpr char32_t hangul_s_base = 0xAC00, hangul_l_base = 0x1100, hangul_v_base = 0x1161,
                   hangul_t_base = 0x11A7;
constexpr int hangul_l_count = 19, hangul_v_count = 21, hangul_t_count = 28;
constexpr int hangul_n_count = hangul_v_count * hangul_t_count;
constexpr int hangul_s_count = hangul_l_count * hangul_n_count;

int combining_rank_of(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* begin = data::combining_ranks;
  const auto* end = begin + data::combining_ranks_count;
  const auto* it = std::lower_bound(begin, end, cp, [](const data::combining_rank& r, char32_t c) {
    return r.code_point < c;
  });
  return it != end && it->code_point == cp ? it->rank : 0;
}

void decompose_into(char32_t cp, std::u32string& out) {
  if (cp >= hangul_s_base && cp < hangul_s_base + hangul_s_count) {
    const int index = static_cast<int>(cp - hangul_s_base);
    out.push_back(hangul_l_base + index / hangul_n_count);
    out.push_back(hangul_v_base + (index % hangul_n_count) / hangul_t_count);
    if (index % hangul_t_count != 0) out.push_back(hangul_t_base + index % hangul_t_count);
    return;
  }
  const auto* begin = data::decompositions;
  const auto* end = begin + data::decompositions_count;
  const auto* it = std::lower_bound(begin, end, cp, [](const data::decomposition& d, char32_t c) {
    return d.code_point < c;
  });
  if (it == end || it->code_point != cp) {
    out.push_back(cp);
    return;
  }
  out.append(data::decomposition_pool + it->offset, it->length);
}

// Returns 0 when a and b do not compose.
char32_t compose(char32_t a, char32_t b) {
  if (a >= hangul_l_base && a < hangul_l_base + hangul_l_count && b >= hangul_v_base &&
      b < hangul_v_base + hangul_v_count) {
    return hangul_s_base + ((a - hangul_l_base) * hangul_v_count + (b - hangul_v_base)) *
                               hangul_t_count;
  }
  if (a >= hangul_s_base && a < hangul_s_base + hangul_s_count &&
      (a - hangul_s_base) % hangul_t_count == 0 && b > hangul_t_base &&
      b < hangul_t_base + hangul_t_count) {
    return a + (b - hangul_t_base);
  }
  const auto* begin = data::compositions;
  const auto* end = begin + data::compositions_count;
  const auto* it = std::lower_bound(begin, end, std::pair{a, b},
                                    [](const data::composition& c, std::pair<char32_t, char32_t> k) {
                                      return c.first < k.first ||
                                             (c.first == k.first && c.second < k.second);
                                    });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

}  // namespace

general_category category(char32_t cp) {
  if (cp < 0x10000) return static_cast<general_category>(bmp_categories()[cp]);
  if (cp > 0x10FFFF) return general_category::Cn;
  const auto* begin = data::category_runs;
  const auto* end = begin + data::category_runs_count;
  const auto* it = std::upper_bound(begin, end, cp, [](char32_t c, const data::category_run& r) {
    return c < r.start;
  });
  return static_cast<general_category>((it - 1)->category);
}

bool is_white_space(char32_t cp) {
  for (std::size_t i = 0; i < data::white_space_ranges_count; ++i) {
    if (cp < data::white_space_ranges[i].first) return false;
    if (cp <= data::white_space_ranges[i].last) return true;
  }
  return false;
}

category_mask category_mask_from_name(std::string_view name) {
  using gc = general_category;
  struct entry {
    std::string_view name;
    category_mask mask;
  };
  static constexpr gc all[] = {gc::Lu, gc::Ll, gc::Lt, gc::Lm, gc::Lo, gc::Mn, gc::Mc, gc::Me,
                               gc::Nd, gc::Nl, gc::No, gc::Pc, gc::Pd, gc::Ps, gc::Pe, gc::Pi,
                               gc::Pf, gc::Po, gc::Sm, gc::Sc, gc::Sk, gc::So, gc::Zs, gc::Zl,
                               gc::Zp, gc::Cc, gc::Cf, gc::Cs, gc::Co, gc::Cn};
  static constexpr std::string_view names[] = {
      "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
      "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"};
  static constexpr entry long_names[] = {{"Letter", 'L'},      {"Mark", 'M'},   {"Number", 'N'},
                                         {"Punctuation", 'P'}, {"Symbol", 'S'}, {"Separator", 'Z'},
                                         {"Other", 'C'}};
  char major = 0;
  if (name.size() == 1) major = name[0];
  for (const auto& e : long_names) {
    if (e.name == name) major = static_cast<char>(e.mask);
  }
  category_mask mask = 0;
  for (std::size_t i = 0; i < std::size(names); ++i) {
    if (major != 0 ? names[i][0] == major : names[i] == name) mask |= mask_of(all[i]);
  }
  return mask;
}

void utf8_feed(utf8_state& s, std::string_view bytes, std::u32string& out) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unsigned b = static_cast<unsigned char>(bytes[i]);
    if (s.needed == 0) {
      ++i;
      if (b <= 0x7F) {
        out.push_back(b);
      } else if (b >= 0xC2 && b <= 0xDF) {
        s.needed = 1;
        s.code_point = b & 0x1F;
      } else if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) s.lower = 0xA0;
        if (b == 0xED) s.upper = 0x9F;
        s.needed = 2;
        s.code_point = b & 0x0F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) s.lower = 0x90;
        if (b == 0xF4) s.upper = 0x8F;
        s.needed = 3;
        s.code_point = b & 0x07;
      } else {
        out.push_back(replacement_character);
      }
      continue;
    }
    if (b < s.lower || b > s.upper) {
      // The bytes so far are one maximal invalid subpart; b is looked at afresh.
      s = utf8_state{};
      out.push_back(replacement_character);
      continue;
    }
    ++i;
    s.lower = 0x80;
    s.upper = 0xBF;
    s.code_point = (s.code_point << 6) | (b & 0x3F);
    if (++s.seen == s.needed) {
      out.push_back(s.code_point);
      s = utf8_state{};
    }
  }
}

void utf8_finish(utf8_state& state, std::u32string& out) {
  if (state.needed != 0) out.push_back(replacement_character);
  state = utf8_state{};
}

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  utf8_state state;
  utf8_feed(state, bytes, out);
  utf8_finish(state, out);
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

std::u32string nfc(std::u32string_view text) {
  // Nothing below U+0300 decomposes or combines, and most text is like that.
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x300; })) {
    return std::u32string(text);
  }
  std::u32string decomposed;
  decomposed.reserve(text.size() + 8);
  for (char32_t cp : text) decompose_into(cp, decomposed);

  // Canonical ordering: a stable sort of each run of marks by combining class.
  std::vector<int> ranks(decomposed.size());
  for (std::size_t i = 0; i < decomposed.size(); ++i) ranks[i] = combining_rank_of(decomposed[i]);
  for (std::size_t i = 1; i < decomposed.size(); ++i) {
    for (std::size_t j = i; j > 0 && ranks[j] != 0 && ranks[j - 1] > ranks[j]; --j) {
      std::swap(ranks[j], ranks[j - 1]);
      std::swap(decomposed[j], decomposed[j - 1]);
    }
  }

  // Canonical composition: each character composes with the last starter unless a
  // character of equal or higher class (or a starter) stands between them.
  std::u32string out;
  out.reserve(decomposed.size());
  bool have_starter = false;
  std::size_t starter = 0;
  int last_rank = 0;
  for (std::size_t i = 0; i < decomposed.size(); ++i) {
    const char32_t ch = decomposed[i];
    const int rank = ranks[i];
    if (have_starter) {
      const bool adjacent = out.size() - 1 == starter;
      const bool blocked = !adjacent && (last_rank == 0 || last_rank >= rank);
      if (!blocked) {
        if (const char32_t composite = compose(out[starter], ch); composite != 0) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (rank == 0) {
      have_starter = true;
      starter = out.size();
    }
    last_rank = rank;
    out.push_back(ch);
  }
  return out;
}

}  // namespace dsrt::tokenizer::unicode

// The text dsgen's default tokenizer learns its merges from: plain English prose and a
// little C++ and Python, all ASCII and written for this project, so the merges (and thus
// tokenizer.json) are the same on every machine and owe nothing to any licensed corpus.
#include "apps/dsgen/tokenizer_gen.h"

namespace dsrt::dsgen {

const char* const training_corpus = R"corpus(
The old lighthouse stood at the end of the harbour wall, and every evening the keeper
climbed its one hundred and twelve steps to light the lamp. He had done this for thirty
years. The ships that passed in the night did not know his name, but they knew his light,
and that was enough for him. In the winter the wind came from the north and the sea
turned grey and heavy. In the summer the children of the town ran along the wall and
shouted at the gulls, and the keeper would wave to them from the gallery at the top.

One morning a letter came from the city. The lighthouse was to be given a new lamp, one
that would turn itself on when the sun went down and turn itself off when the sun came
up. There would be no need for a keeper any more. He read the letter twice, folded it
carefully, and put it in the drawer of the kitchen table. Then he went out to the garden
and began to dig the potatoes, because it was the season for potatoes, and a man should
do the work that is in front of him.

The river that runs through the valley is not wide, but it is deep and it is cold. In
the spring, when the snow melts on the mountains, the water rises quickly and the old
stone bridge is sometimes hidden beneath it. The farmers who live on the far side have
learned to wait. They say that the river keeps its own time, and that a person who is
in a hurry to cross it will only learn the lesson twice.

It was a bright cold day in April, and the clocks in the station were all showing
different times. The travellers looked at one clock and then at another, and then at
their own watches, and they could not decide which of them to believe. A small girl with
a red coat said that the clocks were having an argument, and her mother laughed and said
that perhaps they were. The train, when it came at last, was exactly on time.

There is a kind of patience that comes only from working with your hands. The carpenter
measures twice and cuts once; the baker waits for the dough to rise; the gardener plants
in the autumn for flowers that will open in the spring. None of them can hurry the work,
and all of them know that the waiting is part of the work itself.

A good question is worth more than a quick answer. When you do not understand something,
say so, and ask again in a different way. Most of what we know we learned by asking,
and most of what we got wrong we got wrong because we were afraid to ask.

Numbers: 1, 2, 3, 10, 20, 42, 100, 256, 1024, 2048, 4096, 65536, 3.14159, 2.71828.
Dates: 1999-12-31, 2024-01-01. Times: 09:30, 17:45. Money: $5, $12.50, $1,000.

// A small example in C++.
#include <cstdio>
#include <string>
#include <vector>

struct point {
  double x = 0;
  double y = 0;
};

double dot(const point& a, const point& b) { return a.x * b.x + a.y * b.y; }

int count_words(const std::string& text) {
  int count = 0;
  bool in_word = false;
  for (char c : text) {
    if (c == ' ' || c == '\n') {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++count;
    }
  }
  return count;
}

int main(int argc, char** argv) {
  std::vector<point> points = {{1, 2}, {3, 4}, {5, 6}};
  double total = 0;
  for (const auto& p : points) total += dot(p, p);
  std::printf("total = %f, args = %d\n", total, argc);
  return 0;
}

# And the same idea in Python.
def count_words(text):
    count = 0
    in_word = False
    for c in text:
        if c in (" ", "\n"):
            in_word = False
        elif not in_word:
            in_word = True
            count += 1
    return count

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def dot(self, other):
        return self.x * other.x + self.y * other.y

if __name__ == "__main__":
    points = [Point(1, 2), Point(3, 4), Point(5, 6)]
    total = sum(p.dot(p) for p in points)
    print(f"total = {total}")
)corpus";

}  // namespace dsrt::dsgen

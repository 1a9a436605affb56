#pragma once
#include <CLI/CLI.hpp>

#include <functional>

namespace dsrt::apps {

// Each adds its subcommand to app and returns the function that runs it (exit code).
std::function<int()> add_generate_command(CLI::App& app);
std::function<int()> add_tokenize_command(CLI::App& app);
std::function<int()> add_logits_command(CLI::App& app);
std::function<int()> add_ask_command(CLI::App& app);
std::function<int()> add_cluster_command(CLI::App& app);

}  // namespace dsrt::apps

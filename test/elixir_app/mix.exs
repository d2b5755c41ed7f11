# The Elixir web servers that Phoenix apps run on, with fin_close as a path
# dependency, for test/fin_close_elixir_SUITE. Built offline by
# scripts/elixir_app.sh from the sources in ../shared/elixir-deps (unpacked
# into FIN_CLOSE_ELIXIR_SRC) and Debian's Cowboy (FIN_CLOSE_COWBOY, see
# scripts/cowboy.sh).
defmodule FinCloseElixirApp.MixProject do
  use Mix.Project

  def project do
    [app: :fin_close_elixir_app, version: "0.1.0", elixir: "~> 1.14", deps: deps()]
  end

  def application do
    [extra_applications: [:logger, :ssl]]
  end

  defp deps do
    src = System.fetch_env!("FIN_CLOSE_ELIXIR_SRC")
    cowboy = System.fetch_env!("FIN_CLOSE_COWBOY")

    hex =
      for name <- ~w(bandit thousand_island plug plug_crypto mime telemetry websock
                     websock_adapter hpax plug_cowboy cowboy_telemetry)a do
        {name, path: Path.join(src, Atom.to_string(name)), override: true}
      end

    debian =
      for name <- ~w(cowboy cowlib ranch)a do
        [dir] = Path.wildcard(Path.join(cowboy, "#{name}-*"))
        {name, path: dir, compile: "true", override: true}
      end

    [{:fin_close, path: "../..", manager: :rebar3} | hex ++ debian]
  end
end

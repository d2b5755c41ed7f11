defmodule Consumer.MixProject do
  use Mix.Project

  def project do
    [app: :consumer, version: "0.1.0", elixir: "~> 1.14", deps: deps()]
  end

  def application do
    [extra_applications: [:logger]]
  end

  # A path dependency: Mix builds fin_close with rebar3 (MIX_REBAR3 points
  # at Debian's). The test sets FIN_CLOSE_PATH to the checkout it tests.
  defp deps do
    [{:fin_close, path: System.get_env("FIN_CLOSE_PATH", "../fin_close")}]
  end
end

/** Hash routes (`#/jobs/ID?x=y`): the dashboard is one static page under /ui/. */
import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string[];
  query: URLSearchParams;
}

function current(): Route {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path = "", query = ""] = hash.split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

export const navigate = (to: string): void => void (location.hash = `#${to}`);

export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const change = () => setRoute(current());
    window.addEventListener("hashchange", change);
    return () => window.removeEventListener("hashchange", change);
  }, []);
  return route;
}

/** The client the hooks use, given once near the root of the app. */
import { createContext, useContext, useMemo, type ReactNode } from "react";

import { createVidpipeClient, type VidpipeClient, type VidpipeConfig } from "./client.js";

const VidpipeContext = createContext<VidpipeClient | null>(null);

export type VidpipeProviderProps = { children?: ReactNode } & (
  | { client: VidpipeClient }
  | ({ client?: undefined } & VidpipeConfig)
);

/**
 * `<VidpipeProvider baseUrl="..." token={getToken}>` (or `client={createVidpipeClient(...)}`),
 * inside the app's `QueryClientProvider`.
 */
export function VidpipeProvider(props: VidpipeProviderProps) {
  const { children } = props;
  const given = props.client;
  const baseUrl = given ? undefined : props.baseUrl;
  const token = given ? undefined : props.token;
  const fetchImpl = given ? undefined : props.fetch;
  const client = useMemo(
    () => given ?? createVidpipeClient({ baseUrl: baseUrl ?? "", token, fetch: fetchImpl }),
    [given, baseUrl, token, fetchImpl],
  );
  return <VidpipeContext.Provider value={client}>{children}</VidpipeContext.Provider>;
}

export function useVidpipeClient(): VidpipeClient {
  const client = useContext(VidpipeContext);
  if (!client) {
    throw new Error("vidpipe hooks need a <VidpipeProvider baseUrl=... token=...> above them");
  }
  return client;
}

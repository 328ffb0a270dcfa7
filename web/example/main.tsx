/**
 * The example app: sign in with a token, upload videos with VideoUpload (with
 * upload progress), follow each with VideoProcessingProgress, list the caller's queues.
 * It uses only @vidpipe/react's public API, against the API on this page's origin.
 */
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode, useRef, useState, type FormEvent } from "react";
import { createRoot } from "react-dom/client";

import {
  createVidpipeClient,
  useVideoProcessingQueues,
  VideoProcessingProgress,
  VideoUpload,
  VidpipeProvider,
} from "@vidpipe/react";
import "@vidpipe/react/styles.css";
import "./example.css";

const queryClient = new QueryClient();

function SignIn({ onToken }: { onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (value.trim()) onToken(value.trim());
  };
  return (
    <form onSubmit={submit} className="card">
      <h2>Sign in</h2>
      <label htmlFor="token">Access token</label>
      <input id="token" value={value} onChange={(event) => setValue(event.target.value)} autoComplete="off" />
      <button type="submit">Sign in</button>
    </form>
  );
}

function Queues() {
  const { data } = useVideoProcessingQueues({ limit: 10 }, { refetchInterval: 5000 });
  return (
    <section className="card" aria-labelledby="queues-title">
      <h2 id="queues-title">Your videos</h2>
      <ul id="queue-list">
        {data?.items.map((queue) => (
          <li key={queue.queue_id} data-status={queue.status}>
            {queue.filename ?? queue.queue_id} — <span className="q-status">{queue.status}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

function App() {
  const [token, setToken] = useState<string | null>(null);
  const [queues, setQueues] = useState<string[]>([]);
  const [client] = useState(() =>
    createVidpipeClient({ baseUrl: window.location.origin, token: () => tokenRef.current }),
  );
  const tokenRef = useRef<string | null>(null);
  tokenRef.current = token;
  return (
    <QueryClientProvider client={queryClient}>
      <VidpipeProvider client={client}>
        <main>
          <h1>vidpipe · @vidpipe/react example</h1>
          {token ? (
            <>
              <VideoUpload
                className="card"
                showProgress={false}
                onQueued={({ queue_id: id }) => setQueues((known) => [id, ...known.filter((k) => k !== id)])}
              />
              {queues.map((id) => (
                <VideoProcessingProgress key={id} queueId={id} />
              ))}
              <Queues />
            </>
          ) : (
            <SignIn onToken={setToken} />
          )}
        </main>
      </VidpipeProvider>
    </QueryClientProvider>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

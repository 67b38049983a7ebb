// Smoke program for the TypeScript types generated from openapi/v1.json by openapi-typescript,
// called through openapi-fetch. Type-checked with `tsc --noEmit`, then compiled and run with node
// by tests/clients/test_generated_clients.py, with ERPGW_URL, ERPGW_TOKEN (all scopes)
// and ERPGW_NARROW_TOKEN (returns:read only) set, against a gateway that does not post orders itself
// (ERPGW_INTAKE__POST_IN_WORKERS=false, no `erp-gateway worker`): the order it submits stays `accepted`
// until it cancels it, which releases its hold, so a rerun finds the same stock.
// Calls every operation, each once with success and once with an error the spec documents.
// Exits 0 when every check held, else prints each failure and exits 1.
import { randomUUID } from "node:crypto";
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./generated/schema.js";

type Problem = components["schemas"]["Problem"];
/** The type the spec gives a response header (`unknown` while the spec does not declare it). */
type HeaderOf<O extends keyof operations, S extends keyof operations[O]["responses"], N extends string> =
  operations[O]["responses"][S] extends { headers: infer H } ? (N extends keyof H ? H[N] : unknown) : never;

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const baseUrl = env("ERPGW_URL");
const PROBLEM_TYPES = "https://erp-gateway.dev/problems/";
/** Well-formed (`in_` and 26 of [0-9a-z]) but no intake's. */
const UNKNOWN_INTAKE = `in_${"0".repeat(26)}`;
const failures: string[] = [];

function check(condition: boolean, what: string): void {
  console.log((condition ? "ok   " : "FAIL ") + what);
  if (!condition) failures.push(what);
}

const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${env("ERPGW_TOKEN")}` } });
const narrow = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${env("ERPGW_NARROW_TOKEN")}` } });
const forged = createClient<paths>({ baseUrl, headers: { Authorization: "Bearer not-a-jwt" } });
const anonymous = createClient<paths>({ baseUrl });

/** A response header, typed as the spec declares it for that operation and status. */
function header<O extends keyof operations, S extends keyof operations[O]["responses"], N extends string>(
  answer: { response: Response },
  _operation: O,
  _status: S,
  name: N,
): HeaderOf<O, S, N> | null {
  return answer.response.headers.get(name) as HeaderOf<O, S, N> | null;
}

interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

function success<T>(operation: string, answer: Answer<T>, status: number): T | undefined {
  const { data, response } = answer;
  check(response.status === status && data !== undefined, `${operation}: ${status} (got ${response.status})`);
  check(!!response.headers.get("X-Request-ID"), `${operation}: X-Request-ID on the answer`);
  return data;
}

function problem(operation: string, answer: Answer<unknown>, status: number, type: string): Problem | undefined {
  const { response } = answer;
  const error = answer.error as Problem | undefined;
  check(
    response.status === status && error?.type === PROBLEM_TYPES + type,
    `${operation}: ${status} ${type} (got ${response.status} ${error?.type})`,
  );
  check(error?.correlationId === response.headers.get("X-Request-ID"), `${operation}: correlationId = X-Request-ID`);
  return error;
}

async function main(): Promise<number> {
  // healthz / readyz: open, no token
  success("healthz", await anonymous.GET("/healthz"), 200);
  const ready = success("readyz", await anonymous.GET("/readyz"), 200);
  check(ready?.status === "ok" || ready?.status === "degraded", "readyz: status ok or degraded");

  // getAvailability: a miss, then a hit (Cache-Status); the caller's X-Request-ID comes back
  await client.POST("/v1/admin/cache/invalidate", { body: { skus: ["TEE-NVY-M"] } });
  const sku = { path: { sku: "TEE-NVY-M" } };
  const first = await client.GET("/v1/availability/{sku}", { params: sku });
  const stock = success("getAvailability", first, 200);
  check(stock?.sku === "TEE-NVY-M", "getAvailability: the SKU asked");
  const firstStatus = header(first, "getAvailability", 200, "Cache-Status");
  check(String(firstStatus).includes("fwd=miss"), `getAvailability: Cache-Status fwd=miss first (${firstStatus})`);
  const mine = `smoke-${randomUUID()}`;
  const again = await client.GET("/v1/availability/{sku}", { params: sku, headers: { "X-Request-ID": mine } });
  success("getAvailability (cached)", again, 200);
  // (a hit or, from the other worker with no Redis shared, a miss)
  check(!!header(again, "getAvailability", 200, "Cache-Status"), "getAvailability: Cache-Status the second time");
  const echoed = header(again, "getAvailability", 200, "X-Request-ID");
  check(echoed === mine, "getAvailability: the caller's X-Request-ID echoed");
  check(!!again.response.headers.get("RateLimit"), "getAvailability: RateLimit header");
  const east = success(
    "getAvailability ?warehouse",
    await client.GET("/v1/availability/{sku}", { params: { ...sku, query: { warehouse: "EAST" } } }),
    200,
  );
  check(east?.warehouses.map((w) => w.warehouse).join() === "EAST", "getAvailability: warehouse filter");
  problem(
    "getAvailability",
    await client.GET("/v1/availability/{sku}", { params: { path: { sku: "NO-SUCH-SKU" } } }),
    404,
    "sku-not-found",
  );

  // getAvailabilityBatch: unknown SKUs listed, not failed; 403 without availability:read
  const batchBody = { skus: ["TEE-NVY-M", "MUG-SND", "NO-SUCH-SKU"] };
  const batch = success("getAvailabilityBatch", await client.POST("/v1/availability/batch", { body: batchBody }), 200);
  check(batch?.unknownSkus.join() === "NO-SUCH-SKU", "getAvailabilityBatch: unknownSkus");
  const denied = await narrow.POST("/v1/availability/batch", { body: batchBody });
  problem("getAvailabilityBatch", denied, 403, "forbidden");
  check(
    !!denied.response.headers.get("WWW-Authenticate")?.includes("insufficient_scope"),
    "getAvailabilityBatch: WWW-Authenticate",
  );

  // checkPrices: a contract price; an unknown customer is a 422
  const prices = success(
    "checkPrices",
    await client.POST("/v1/prices/check", {
      body: { customer: "C-1001", currency: "EUR", lines: [{ sku: "TOTE-NAT", quantity: 20 }] },
    }),
    200,
  );
  check(prices?.lines.length === 1, "checkPrices: one line");
  problem(
    "checkPrices",
    await client.POST("/v1/prices/check", {
      body: { customer: "C-9999", currency: "EUR", lines: [{ sku: "TOTE-NAT", quantity: 1 }] },
    }),
    422,
    "unknown-customer",
  );

  // validateOrder: an answer with valid true or false; a forged token is a 401
  const cart = { currency: "EUR", warehouse: "EAST", lines: [{ sku: "LAMP-WHT", quantity: 1, unitPrice: "79.00" }] };
  const validation = success("validateOrder", await client.POST("/v1/orders/validate", { body: cart }), 200);
  check(typeof validation?.valid === "boolean", "validateOrder: valid is a boolean");
  const refused = await forged.POST("/v1/orders/validate", { body: cart });
  problem("validateOrder", refused, 401, "unauthorized");
  check(!!refused.response.headers.get("WWW-Authenticate")?.includes("invalid_token"), "validateOrder: WWW-Authenticate");

  // getOrder / findOrdersByExternalRef
  const order = success("getOrder", await client.GET("/v1/orders/{orderNumber}", { params: { path: { orderNumber: "SO-1002" } } }), 200);
  check(order?.orderNumber === "SO-1002", "getOrder: the order asked");
  problem(
    "getOrder",
    await client.GET("/v1/orders/{orderNumber}", { params: { path: { orderNumber: "SO-9999" } } }),
    404,
    "order-not-found",
  );
  const found = success(
    "findOrdersByExternalRef",
    await client.GET("/v1/orders", { params: { query: { externalRef: "WC-5002" } } }),
    200,
  );
  check(found?.items.map((o) => o.orderNumber).join() === "SO-1002", "findOrdersByExternalRef: SO-1002");
  problem(
    "findOrdersByExternalRef",
    await narrow.GET("/v1/orders", { params: { query: { externalRef: "WC-5002" } } }),
    403,
    "forbidden",
  );

  // submitOrder: 202 with the intake (its line held) and Location; the same key and body again
  // answer the same intake (Idempotent-Replayed); more units than exist are a 409 naming the short
  // line; 403 without orders:write. A fresh externalRef and key per run: a rerun is a new order.
  const checkout = (externalRef: string, quantity: number) => ({
    externalRef,
    currency: "EUR",
    lines: [{ sku: "MUG-SND", quantity, unitPrice: "14.00" }],
    shippingAddress: { name: "Jo Buyer", street: "Hauptstrasse 1", postalCode: "10115", city: "Berlin", country: "DE" },
    contact: { name: "Jo Buyer", email: "jo@example.com" },
  });
  const orderRef = `SMOKE-${randomUUID()}`;
  const orderKey = randomUUID();
  const submittedAnswer = await client.POST("/v1/orders", {
    params: { header: { "Idempotency-Key": orderKey } },
    body: checkout(orderRef, 1),
  });
  const submitted = success("submitOrder", submittedAnswer, 202);
  check(
    submitted?.externalRef === orderRef && submitted.status === "accepted",
    "submitOrder: accepted, with the externalRef sent",
  );
  check(
    submitted?.held.map((h) => `${h.sku}x${h.quantity}`).join() === "MUG-SNDx1",
    "submitOrder: the one unit held",
  );
  const intakeLocation = header(submittedAnswer, "submitOrder", 202, "Location");
  check(
    !!submitted && String(intakeLocation).endsWith(`/v1/order-intakes/${submitted.intakeId}`),
    `submitOrder: Location ${intakeLocation}`,
  );
  check(
    header(submittedAnswer, "submitOrder", 202, "Idempotent-Replayed") === null,
    "submitOrder: a new intake is not replayed",
  );
  const resubmittedAnswer = await client.POST("/v1/orders", {
    params: { header: { "Idempotency-Key": orderKey } },
    body: checkout(orderRef, 1),
  });
  const resubmitted = success("submitOrder (replay)", resubmittedAnswer, 202);
  const orderReplayed = header(resubmittedAnswer, "submitOrder", 202, "Idempotent-Replayed");
  check(orderReplayed === "true", "submitOrder: Idempotent-Replayed: true");
  check(!!submitted && resubmitted?.intakeId === submitted.intakeId, "submitOrder: the replay is the same intake");
  const short = problem(
    "submitOrder",
    await client.POST("/v1/orders", {
      params: { header: { "Idempotency-Key": randomUUID() } },
      body: checkout(`SMOKE-${randomUUID()}`, 1_000_000),
    }),
    409,
    "insufficient-stock",
  );
  const shortLines = short?.shortLines ?? [];
  check(
    shortLines.map((l) => `${l.line}:${l.sku}:${l.requested}`).join() === "0:MUG-SND:1000000" &&
      (shortLines[0]?.available ?? Infinity) < 1_000_000,
    "submitOrder: shortLines names the line",
  );
  problem(
    "submitOrder (narrow token)",
    await narrow.POST("/v1/orders", {
      params: { header: { "Idempotency-Key": randomUUID() } },
      body: checkout(`SMOKE-${randomUUID()}`, 1),
    }),
    403,
    "forbidden",
  );

  // getOrderIntake: the intake submitted; an unknown (well-formed) id is a 404
  if (submitted) {
    const read = success(
      "getOrderIntake",
      await client.GET("/v1/order-intakes/{intakeId}", { params: { path: { intakeId: submitted.intakeId } } }),
      200,
    );
    check(
      read?.intakeId === submitted.intakeId && read.status === "accepted",
      "getOrderIntake: the intake submitted, accepted",
    );
  }
  problem(
    "getOrderIntake",
    await client.GET("/v1/order-intakes/{intakeId}", { params: { path: { intakeId: UNKNOWN_INTAKE } } }),
    404,
    "intake-not-found",
  );

  // listOrderIntakes (admin): the accepted backlog holds the intake; 403 without the admin scope
  const accepted = { params: { query: { status: "accepted" as const } } };
  const backlog = success("listOrderIntakes", await client.GET("/v1/admin/order-intakes", accepted), 200);
  check(
    !!submitted &&
      !!backlog?.items.some((i) => i.intakeId === submitted.intakeId) &&
      backlog.items.every((i) => i.status === "accepted"),
    "listOrderIntakes: the accepted intakes, the one submitted among them",
  );
  problem("listOrderIntakes", await narrow.GET("/v1/admin/order-intakes", accepted), 403, "forbidden");

  // listShadowMismatches (admin): no shadow configured, so none; 403 without the admin scope
  const report = success("listShadowMismatches", await client.GET("/v1/admin/shadow/mismatches"), 200);
  check(!!report && report.items.length === 0, "listShadowMismatches: no shadow reads, no mismatches");
  problem("listShadowMismatches", await narrow.GET("/v1/admin/shadow/mismatches"), 403, "forbidden");

  // replayOrderIntake / cancelOrderIntake (admin): replaying an intake not given up changes
  // nothing; cancelled (its hold released), cancelled again as it is; a cancelled intake cannot
  // be replayed (409); an unknown intake cannot be cancelled (404)
  if (submitted) {
    const intake = { params: { path: { intakeId: submitted.intakeId } } };
    const replayedIntake = success(
      "replayOrderIntake",
      await client.POST("/v1/admin/order-intakes/{intakeId}/replay", intake),
      200,
    );
    check(replayedIntake?.status === "accepted", "replayOrderIntake: an accepted intake stays accepted");
    for (const attempt of ["cancelOrderIntake", "cancelOrderIntake (again)"]) {
      const cancelled = success(attempt, await client.POST("/v1/admin/order-intakes/{intakeId}/cancel", intake), 200);
      check(cancelled?.status === "cancelled", `${attempt}: status cancelled`);
    }
    problem(
      "replayOrderIntake",
      await client.POST("/v1/admin/order-intakes/{intakeId}/replay", intake),
      409,
      "intake-not-changeable",
    );
  }
  problem(
    "cancelOrderIntake",
    await client.POST("/v1/admin/order-intakes/{intakeId}/cancel", {
      params: { path: { intakeId: UNKNOWN_INTAKE } },
    }),
    404,
    "intake-not-found",
  );

  // createReturn: 201 with Location; the same key replays (Idempotent-Replayed); the same key
  // with another body is a 422
  const key = randomUUID();
  const body = {
    orderNumber: "SO-1003",
    lines: [{ sku: "HOOD-BLK-L", quantity: 1, reason: "wrong_item" as const }],
  };
  const createdAnswer = await client.POST("/v1/returns", { params: { header: { "Idempotency-Key": key } }, body });
  const created = success("createReturn", createdAnswer, 201);
  const location = header(createdAnswer, "createReturn", 201, "Location");
  check(
    !!created && String(location).endsWith(`/v1/returns/${created.rmaNumber}`),
    `createReturn: Location ${location}`,
  );
  const replayAnswer = await client.POST("/v1/returns", { params: { header: { "Idempotency-Key": key } }, body });
  const replay = success("createReturn (replay)", replayAnswer, 201);
  const replayed = header(replayAnswer, "createReturn", 201, "Idempotent-Replayed");
  check(replayed === "true", "createReturn: Idempotent-Replayed: true");
  check(!!created && replay?.rmaNumber === created.rmaNumber, "createReturn: the replay is the same RMA");
  problem(
    "createReturn",
    await client.POST("/v1/returns", {
      params: { header: { "Idempotency-Key": key } },
      body: { ...body, lines: [{ sku: "HOOD-BLK-L", quantity: 1, reason: "damaged" }] },
    }),
    422,
    "idempotency-key-reused",
  );

  // getReturn
  if (created) {
    const got = success(
      "getReturn",
      await client.GET("/v1/returns/{rmaNumber}", { params: { path: { rmaNumber: created.rmaNumber } } }),
      200,
    );
    check(got?.rmaNumber === created.rmaNumber, "getReturn: the RMA created");
  }
  problem(
    "getReturn",
    await client.GET("/v1/returns/{rmaNumber}", { params: { path: { rmaNumber: "RMA-999999" } } }),
    404,
    "return-authorization-not-found",
  );

  // invalidateCache (admin); 403 without the admin scope
  const dropped = success(
    "invalidateCache",
    await client.POST("/v1/admin/cache/invalidate", { body: { skus: ["TEE-NVY-M"] } }),
    200,
  );
  check(typeof dropped?.invalidatedEntries === "number", "invalidateCache: invalidatedEntries");
  problem(
    "invalidateCache",
    await narrow.POST("/v1/admin/cache/invalidate", { body: { skus: ["TEE-NVY-M"] } }),
    403,
    "forbidden",
  );

  console.log(failures.length ? `typescript client: ${failures.length} failed` : "typescript client: every check held");
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);

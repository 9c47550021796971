/*
 * The two classes of rate-limiter-flexible that Gantry uses, imported from their own files: the
 * package's index loads every limiter it has (Redis, Mongo, MySQL, Postgres, DynamoDB, etcd, …),
 * ~90 KB of code in the server bundle.
 */
declare module 'rate-limiter-flexible/lib/RateLimiterMemory.js' {
  import { RateLimiterMemory } from 'rate-limiter-flexible';
  export default RateLimiterMemory;
}
declare module 'rate-limiter-flexible/lib/RateLimiterRes.js' {
  import { RateLimiterRes } from 'rate-limiter-flexible';
  export default RateLimiterRes;
}

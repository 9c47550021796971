CREATE TABLE `actor_snapshots` (
	`machine` text NOT NULL,
	`actor_id` text NOT NULL,
	`gateway_id` text NOT NULL,
	`version` integer NOT NULL,
	`snapshot` text NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`machine`, `actor_id`),
	FOREIGN KEY (`gateway_id`) REFERENCES `gateways`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
ALTER TABLE `jobs` ADD `progress` text;--> statement-breakpoint
-- Data written by the previous schema (hand-added to the generated migration): every statechart
-- snapshot moves to actor_snapshots as version 1 of its machine (what wrote it), and a snapshot
-- job's progress, kept in `jobs.snapshot` until now, moves to `jobs.progress`.
INSERT INTO `actor_snapshots` (`machine`, `actor_id`, `gateway_id`, `version`, `snapshot`, `updated_at`)
SELECT CASE `machine` WHEN 'safety' THEN 'safetyInterlock' ELSE `machine` END, `gateway_id`, `gateway_id`, 1, `snapshot`, `updated_at`
FROM `machine_snapshots` WHERE `machine` IN ('partition', 'safety');
--> statement-breakpoint
INSERT INTO `actor_snapshots` (`machine`, `actor_id`, `gateway_id`, `version`, `snapshot`, `updated_at`)
SELECT CASE WHEN `kind` IN ('configure', 'plugin') THEN 'zipOp' ELSE 'updateJob' END, `id`, `gateway_id`, 1, `snapshot`, `updated_at`
FROM `jobs` WHERE `kind` IN ('download', 'deploy', 'restore', 'factory', 'configure', 'plugin') AND `snapshot` IS NOT NULL;
--> statement-breakpoint
UPDATE `jobs` SET `progress` = `snapshot` WHERE `kind` = 'snapshot';
